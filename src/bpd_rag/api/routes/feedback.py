"""POST /api/feedback: thumbs up or down on an answer, stored in SQLite."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from starlette.concurrency import run_in_threadpool

from bpd_rag.api.deps import FeedbackDep, SettingsDep, rate_limit
from bpd_rag.api.errors import ERROR_RESPONSES, ApiError, ErrorResponse
from bpd_rag.api.schemas import FeedbackReceipt, FeedbackRequest
from bpd_rag.errors import BpdRagError

router = APIRouter(prefix="/api", tags=["feedback"], dependencies=[Depends(rate_limit)], responses=ERROR_RESPONSES)


@router.post(
    "/feedback",
    response_model=FeedbackReceipt,
    status_code=201,
    responses={404: {"model": ErrorResponse, "description": "No answer with this id."}},
)
async def feedback(body: FeedbackRequest, store: FeedbackDep, settings: SettingsDep) -> FeedbackReceipt:
    """Rate an answer by its id (a second rating replaces the first); the comment is stored without e-mails/phones."""
    try:
        if settings.api.record_questions and not await run_in_threadpool(store.has_answer, body.answer_id):
            raise ApiError(
                404, "unknown_answer", f"No answer with id {body.answer_id!r}. Use the id returned by POST /api/chat."
            )
        await run_in_threadpool(store.add_feedback, body.answer_id, body.rating, body.comment)
    except BpdRagError as exc:
        raise ApiError(503, "feedback_unavailable", str(exc)) from exc
    return FeedbackReceipt(answer_id=body.answer_id, rating=body.rating)
