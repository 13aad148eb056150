"""The console of a run: one progress display per stage, a summary table, a failure in two lines.

Everything else a run prints (library INFO logs, Ray Data / Train / Tune / Serve messages, Ray worker
output streamed to the driver, tracebacks) goes to the run's log file while the run is *captured*:
``sys.stdout`` / ``sys.stderr`` and every logging handler that wrote to them point at a sink that
writes into the open log files (the job's ``job.log`` and, inside a pipeline, the stage's too).

Modes: ``quiet`` (the summary and errors), ``normal`` (+ one progress display per stage and recsys
warnings) and ``verbose`` (+ every log line and worker output, also kept in the log file). The CLI
sets the mode (``--quiet`` / ``--verbose``); a submitted job reads ``RECSYS_CONSOLE``. Without a mode
(library calls, tests) the console is off and a run prints what it always did.

Jobs and library code never import rich: they report through ``JobContext.progress`` / ``timer``,
which call ``RunConsole.stage``; only this module renders.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TextIO

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

Mode = Literal["quiet", "normal", "verbose"]
MODES: tuple[str, ...] = ("quiet", "normal", "verbose")
ENV = "RECSYS_CONSOLE"  # the mode of a job started without the CLI's flags (a Ray job submission)


def mode_from(quiet: bool = False, verbose: bool = False, default: str | None = None) -> Mode:
    """``--quiet`` / ``--verbose`` flags, else ``$RECSYS_CONSOLE``, else ``default`` or normal."""
    if quiet and verbose:
        raise ValueError("--quiet and --verbose exclude each other")
    if quiet:
        return "quiet"
    if verbose:
        return "verbose"
    env = os.environ.get(ENV, default or "normal")
    return env if env in MODES else "normal"  # type: ignore[return-value]


def short_path(path: str | Path | None) -> str:
    """``path`` relative to the working directory when it lies below it (shorter summary lines)."""
    if not path:
        return ""
    p = Path(path)
    with contextlib.suppress(ValueError):
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    return str(p)


def reason(exc: BaseException, max_chars: int = 300) -> str:
    """An exception as one or two lines: ``Type: message`` (the traceback belongs in the log file)."""
    lines = [ln for ln in str(exc).strip().splitlines() if ln.strip()][:2]
    text = " / ".join(lines) if lines else "(no message)"
    if len(text) > max_chars:
        text = text[: max_chars - 3] + "..."
    return f"{type(exc).__name__}: {text}"


class _Sink(io.TextIOBase):
    """What sys.stdout / sys.stderr point at during a captured run: every open log file, plus the
    terminal when ``echo`` (verbose); the terminal alone when nothing is captured (any handler left
    pointing here after a run writes where it wrote before)."""

    def __init__(self, fallback: TextIO):
        super().__init__()
        self.fallback = fallback
        self.targets: list[TextIO] = []
        self.echo = False
        self._lock = threading.Lock()  # Ray's log thread writes worker output concurrently

    def write(self, s: str) -> int:
        with self._lock:
            if not self.targets or self.echo:
                self.fallback.write(s)
            for t in self.targets:
                with contextlib.suppress(ValueError):  # a target closed by another thread
                    t.write(s)
        return len(s)

    def flush(self) -> None:
        with self._lock:
            for t in [*self.targets, self.fallback]:
                with contextlib.suppress(ValueError, OSError):
                    t.flush()

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:  # code writing to the descriptor lands in the log file too
        return self.targets[0].fileno() if self.targets else self.fallback.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def writable(self) -> bool:
        return True


@dataclass
class StageRow:
    """One line of the summary table."""

    name: str
    status: str = "running"
    metric: str = ""
    seconds: float = 0.0
    report: str = ""


@dataclass
class Stage:
    """A stage's progress handle: ``advance`` steps, set a total, record its result for the summary."""

    console: RunConsole
    row: StageRow
    top: Stage | None = None  # the top-level stage this sub-step updates (None: this is top-level)
    task: Any = None
    total: float | None = None
    unit: str = ""
    completed: float = 0.0
    note: str = ""  # the sub-step now running (shown after the stage's name)
    step: str = ""  # where the stage stands among its siblings, e.g. "3/7" (shown before its name)
    t0: float = field(default_factory=time.perf_counter)

    @property
    def label(self) -> str:
        """The name shown on the console: ``[3/7] features``."""
        return f"[{self.step}] {self.row.name}" if self.step else self.row.name

    def set_total(self, total: float | None, unit: str | None = None) -> Stage:
        self.total = total
        self.unit = unit or self.unit
        self.console._refresh(self)
        return self

    def advance(self, n: float = 1) -> None:
        self.completed += n
        self.console._refresh(self)

    def update(self, completed: float, total: float | None = None) -> None:
        """Absolute progress (e.g. a training step and the run's total steps, from another thread)."""
        self.completed = completed
        if total is not None:
            self.total = total
        self.console._refresh(self)

    def done(
        self, metric: str | None = None, report: str | Path | None = None, status: str | None = None
    ) -> None:
        """Record the stage's key metric, report path and status (default: succeeded when it ends)."""
        if metric is not None:
            self.row.metric = metric
        if report is not None:
            self.row.report = short_path(report)
        if status is not None:
            self.row.status = status


class RunConsole:
    """The console of one process. ``mode=None``: off (no capture, no display)."""

    def __init__(self, mode: Mode | None = None):
        self.mode = mode
        self.rows: list[StageRow] = []
        self.notes: list[str] = []
        self.service_url: str | None = None
        self._stack: list[Stage] = []
        # one sink for the process: a handler made during a run keeps writing to the run that is captured now
        self._sink = _Sink(sys.stderr)
        self._capturing = False
        self._saved: dict[str, Any] = {}
        self._out: Any = None  # rich Console on the real stdout, made when a capture starts
        self._err: Any = None
        self._progress: Any = None  # rich Progress while stages run on a terminal (normal mode)
        self._failed_at: str | None = None  # the innermost stage an exception left (for the error line)
        self.errors: list[str] = []  # the failures shown (a caller need not show them again)
        self.log_path: Path | None = None

    # ---- state ------------------------------------------------------------------------------------
    @property
    def on(self) -> bool:
        return self.mode is not None

    @property
    def captured(self) -> bool:
        return self._capturing

    def _consoles(self) -> None:
        if self._out is None:
            out, err = self._saved.get("stdout", sys.stdout), self._saved.get("stderr", sys.stderr)
            # a terminal's own width; a log never wraps a report path
            self._out = Console(file=out, highlight=False, width=None if _isatty(out) else 200)
            self._err = Console(file=err, highlight=False, width=None if _isatty(err) else 200)

    @property
    def live(self) -> bool:
        """Rich live bars: only in normal mode on a terminal (verbose interleaves log lines)."""
        self._consoles()
        return self.mode == "normal" and self._out.is_terminal

    # ---- capture ----------------------------------------------------------------------------------
    @contextlib.contextmanager
    def capture(self, log_path: str | Path) -> Iterator[Path]:
        """Send stdout, stderr and logging to ``log_path`` (appended) for the block; nested captures
        (a pipeline's stages) add their file beside the outer one."""
        path = Path(log_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if not self.on:
            yield path
            return
        fh = open(path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 - closed in finally
        outer = not self._capturing
        if outer:
            self._start_capture()
            self.log_path = path
        self._sink.targets.append(fh)
        try:
            yield path
        finally:
            self._sink.targets.remove(fh)
            fh.close()
            if outer:
                self._stop_capture()

    def _start_capture(self) -> None:
        self._saved = {"stdout": sys.stdout, "stderr": sys.stderr, "handlers": [], "levels": {}}
        self._out = self._err = None  # drawn on this run's stdout / stderr
        self._consoles()
        self._capturing = True
        self._sink.fallback = self._saved["stderr"]
        self._sink.echo = self.mode == "verbose"
        real = {id(s) for s in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__)}
        for handler in _stream_handlers():
            if id(handler.stream) in real:
                with contextlib.suppress(AttributeError):  # a handler that looks sys.stderr up itself
                    self._saved["handlers"].append((handler, handler.setStream(self._sink)))
        sys.stdout = sys.stderr = self._sink
        logging.captureWarnings(True)
        root = logging.getLogger()
        if not root.handlers:  # libraries that log without a handler of their own: into the file too
            h = logging.StreamHandler(self._sink)
            h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
            root.addHandler(h)
            self._saved["root_handler"] = h
        self._saved["levels"]["root"] = root.level
        if root.level > logging.INFO or root.level == logging.NOTSET:
            root.setLevel(logging.INFO)
        # recsys's own lines: into the sink (the file; the terminal too when verbose), whatever its handlers
        ours = logging.getLogger("recsys")
        self._saved["recsys"] = (ours.handlers[:], ours.propagate, ours.level)
        to_file = logging.StreamHandler(self._sink)
        to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
        ours.handlers = [to_file] + (
            [_ConsoleWarnings(self)] if self.mode == "normal" else []
        )  # warnings: visible
        ours.propagate = False
        ours.setLevel(logging.INFO)

    def _stop_capture(self) -> None:
        self.stop_live()
        self._sink.flush()
        sys.stdout, sys.stderr = self._saved["stdout"], self._saved["stderr"]
        for handler, stream in self._saved["handlers"]:
            with contextlib.suppress(Exception):
                handler.setStream(stream)
        root = logging.getLogger()
        if "root_handler" in self._saved:
            root.removeHandler(self._saved["root_handler"])
        root.setLevel(self._saved["levels"]["root"])
        ours = logging.getLogger("recsys")
        ours.handlers, ours.propagate, level = self._saved["recsys"]
        ours.setLevel(level)
        logging.captureWarnings(False)
        self._sink.targets.clear()
        self._sink.echo = False
        self._capturing = False

    def to_log(self, text: str) -> None:
        """Write ``text`` to the open log files (a traceback; the terminal too when verbose); to stderr when
        not captured."""
        if self._sink.targets:
            self._sink.write(text if text.endswith("\n") else text + "\n")  # echoed when verbose
        else:
            sys.stderr.write(text if text.endswith("\n") else text + "\n")

    # ---- stages -----------------------------------------------------------------------------------
    @contextlib.contextmanager
    def stage(self, name: str, total: float | None = None, unit: str = "", step: str = "") -> Iterator[Stage]:
        """One stage. A stage opened inside another is a sub-step: it names itself in the top-level
        stage's display and adds no row to the summary. An exception marks the stage failed."""
        top = self._stack[0] if self._stack else None
        row = StageRow(name)
        st = Stage(self, row, top=top, total=total, unit=unit, step=step)
        if top is None:
            self.rows.append(row)
            self._begin(st)
        else:
            top.note = name
            self._refresh(st)
        self._stack.append(st)
        try:
            yield st
        except BaseException:
            row.status = "failed"
            if self._failed_at is None:
                self._failed_at = f"{top.row.name} › {name}" if top else name
            raise
        finally:
            self._stack.remove(st)
            row.seconds = time.perf_counter() - st.t0
            if row.status == "running":
                row.status = "succeeded"
            if top is None:
                self._end(st)
            else:
                top.note = ""
                self._refresh(top)

    def pop_failed_stage(self) -> str | None:
        """The stage the last exception left (``stage › sub-step``), once."""
        name, self._failed_at = self._failed_at, None
        return name

    @property
    def current(self) -> Stage | None:
        return self._stack[-1] if self._stack else None

    def _begin(self, st: Stage) -> None:
        if not self.on or self.mode == "quiet":
            return
        if self.live:
            if self._progress is None:
                self._progress = Progress(
                    SpinnerColumn(finished_text=""),
                    TextColumn("{task.description}"),
                    BarColumn(),
                    TextColumn("{task.fields[count]}"),
                    TimeElapsedColumn(),
                    TextColumn("ETA"),
                    TimeRemainingColumn(),
                    console=self._out,
                    redirect_stdout=False,
                    redirect_stderr=False,
                )  # stdout is the log's
                self._progress.start()
            st.task = self._progress.add_task(escape(st.label), total=st.total, count=self._count(st))
        else:
            total = f" ({_num(st.total)} {st.unit})" if st.total else ""
            self._out.print(f"▶ {st.label}{total} ...", markup=False)

    def _refresh(self, st: Stage) -> None:
        top = st.top or st
        if self._progress is None or top.task is None:
            return
        desc = escape(f"{top.label} · {top.note}" if top.note else top.label)
        if st.top is None:
            self._progress.update(
                top.task, description=desc, total=st.total, completed=st.completed, count=self._count(st)
            )
        else:  # a sub-step with a total shows its own count on the top-level line
            self._progress.update(
                top.task, description=desc, count=self._count(st) if st.total else self._count(top)
            )

    @staticmethod
    def _count(st: Stage) -> str:
        if st.total:
            return f"{_num(st.completed)}/{_num(st.total)} {st.unit}".rstrip()
        return f"{_num(st.completed)} {st.unit}".rstrip() if st.completed else ""

    def _end(self, st: Stage) -> None:
        if not self.on or self.mode == "quiet":
            return
        r = st.row
        mark = {"succeeded": "✓", "failed": "✗", "gate failed": "✗", "reused": "↺"}.get(r.status, "•")
        if self._progress is not None and st.task is not None:
            color = "red" if r.status in ("failed", "gate failed") else "green"
            desc = f"[{color}]{mark}[/{color}] {escape(st.label)}" + (
                f" [dim]{escape(r.metric)}[/dim]" if r.metric else ""
            )
            self._progress.update(st.task, total=st.total or 1, completed=st.total or 1, description=desc)
            self._progress.stop_task(st.task)
        else:
            took = "reused (unchanged)" if r.status == "reused" else f"{r.status} in {_secs(r.seconds)}"
            self._out.print(
                f"{mark} {st.label}: {took}" + (f" · {r.metric}" if r.metric else ""), markup=False
            )

    def stop_live(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    # ---- results ----------------------------------------------------------------------------------
    def note(self, text: str) -> None:
        """A line printed under the summary table (gates, registry version, ...)."""
        self.notes.append(text)

    def error(self, stage: str, why: str, report: str | Path | None = None) -> None:
        """A failure, in every mode: stage, reason (1-2 lines), where the report and the log are."""
        if not self.on:
            return
        self.errors.append(f"{stage}: {why}")
        self._consoles()
        self.stop_live()
        where = [f"report: {short_path(report)}"] if report else []
        where += [f"log (traceback): {short_path(self.log_path)}"] if self.log_path else []
        self._err.print(f"[red]✗ {escape(stage)} failed[/red]: {escape(why)}", soft_wrap=True)
        if where:
            self._err.print("  " + " · ".join(where), soft_wrap=True, markup=False)

    def summary(self, title: str, final: StageRow | None = None) -> None:
        """The summary table (every mode), then the notes and the service's URL."""
        if not self.on:
            return
        self._consoles()
        self.stop_live()
        table = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left")
        for col in ("stage", "status", "key metric", "time", "report"):
            table.add_column(col, no_wrap=col in ("report", "stage"))
        for r in [*self.rows, *([final] if final else [])]:
            status = {"succeeded": "[green]ok[/green]", "failed": "[red]FAILED[/red]"}.get(r.status, r.status)
            took = "-" if r.status == "reused" else _secs(r.seconds)
            name = f"[bold]{escape(r.name)}[/bold]" if r is final else escape(r.name)
            table.add_row(name, status, escape(r.metric), took, escape(r.report))
        self._out.print(table)
        for line in self.notes:
            self._out.print(line, soft_wrap=True, markup=False)
        if self.service_url:
            self._out.print(
                f"[bold]service running:[/bold] {self.service_url}  (API docs: {self.service_url}/docs; "
                "stop it: recsys serve --stop)",
                soft_wrap=True,
            )
        if self.log_path:
            self._out.print(f"full log: {short_path(self.log_path)}", soft_wrap=True, markup=False)

    def print(self, text: str, *, quiet_too: bool = False, markup: bool = False) -> None:
        """A line for the reader (not in quiet mode unless ``quiet_too``); plain print when off.
        ``markup``: the text has rich tags (``[yellow]...``); else brackets print as they are."""
        if not self.on:
            print(text)
            return
        if self.mode == "quiet" and not quiet_too:
            return
        self._consoles()
        self._out.print(text, soft_wrap=True, markup=markup)

    def show(self, renderable: Any) -> None:
        """A table or other rich renderable for the reader (not in quiet mode)."""
        if self.mode == "quiet":
            return
        self._consoles()
        self._out.print(renderable)

    def raw(self, text: str) -> None:
        """Text already formatted (a submitted job's console), straight to the real stdout."""
        self._consoles()
        self._out.file.write(text)
        self._out.file.flush()

    def reset(self) -> None:
        """Forget the stages and notes (a second run in the same process)."""
        self.rows, self.notes, self.service_url, self._failed_at, self.errors = [], [], None, None, []
        self._out = self._err = None


class _ConsoleWarnings(logging.Handler):
    """recsys WARNING+ records on the console in normal mode (INFO goes to the log file only)."""

    def __init__(self, console: RunConsole):
        super().__init__(logging.WARNING)
        self.console = console

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):
            self.console._consoles()
            self.console._err.print(
                f"[yellow]warning:[/yellow] {escape(record.getMessage())}", soft_wrap=True
            )


def _stream_handlers() -> list[logging.StreamHandler[Any]]:
    loggers = [
        logging.getLogger(),
        *(lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)),
    ]
    return [
        h
        for lg in loggers
        for h in lg.handlers
        if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)
    ]


def _isatty(f: Any) -> bool:
    with contextlib.suppress(Exception):
        return bool(f.isatty())
    return False


def _num(x: float | None) -> str:
    if x is None:
        return "?"
    return f"{int(x):,}" if float(x).is_integer() else f"{x:,.1f}"


def _secs(s: float) -> str:
    return f"{s:.1f}s" if s < 60 else f"{int(s // 60)}m{int(s % 60):02d}s"


_CONSOLE = RunConsole()


def get_console() -> RunConsole:
    """The process's console (off until the CLI or a job entrypoint calls ``set_mode``)."""
    return _CONSOLE


def set_mode(mode: Mode | None) -> RunConsole:
    """Turn the console on in ``mode`` (``None``: off) and forget earlier stages; returns it."""
    _CONSOLE.mode = mode
    _CONSOLE.reset()
    return _CONSOLE
