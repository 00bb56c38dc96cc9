"""Terminal output shared by the CLI commands: one progress bar for long work."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

# (done, total, label): the signature ingest and the evaluation report progress with.
ProgressUpdate = Callable[[int, int, str], None]


# Off a terminal (CI logs, a pipe), a plain line at least this often instead of a bar that only shows at the end.
LINE_EVERY = 25


@contextmanager
def progress_bar(title: str, console: Console) -> Iterator[ProgressUpdate]:
    """A progress bar titled `title`; the yielded function moves it. Off a terminal: a line every LINE_EVERY
    items (and at the end), so a long ingest in a log shows that it is moving."""
    if not console.is_terminal:
        last = [0]

        def line(done: int, total: int, label: str) -> None:
            if done - last[0] >= LINE_EVERY or (total and done >= total):
                last[0] = done
                of = f"/{total}" if total else ""
                console.print(f"{escape(title)}: {done}{of} {escape(label)}", highlight=False, soft_wrap=True)

        yield line
        return
    with Progress(
        TextColumn(f"[bold]{escape(title)}[/] {{task.description}}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        task = bar.add_task("", total=None)

        def update(done: int, total: int, label: str) -> None:
            bar.update(task, completed=done, total=total, description=label)

        yield update
