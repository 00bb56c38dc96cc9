"""Terminal output shared by the CLI commands: one progress bar for long work."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

# (done, total, label): the signature ingest and the evaluation report progress with.
ProgressUpdate = Callable[[int, int, str], None]


@contextmanager
def progress_bar(title: str, console: Console) -> Iterator[ProgressUpdate]:
    """A progress bar titled `title`; the yielded function moves it."""
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
