"""JAX's persistent compilation cache for robntk: compile once per machine, where that pays.

robntk's compiled programs (above all the scoring engine's kernel function,
:class:`robntk.scoring.engine.Engine`) take minutes to compile, and the same program is
compiled again by every run of the same configuration. JAX can store compiled executables on
disk and load them instead of compiling (the persistent compilation cache,
https://docs.jax.dev/en/latest/persistent_compilation_cache.html); this module turns it on by
default on accelerators, once per process, from the command line (:func:`cli_hook`, called by
:func:`robntk.cli.main`) and from the Python API (:func:`enable`, called by ``Engine``).

On the CPU backend it is off unless asked for: XLA:CPU's ``deserialize_executable`` of the
engine's program cost 2.3× the CPU seconds of compiling it (jax 0.10.2, NB201 C=16 N=5, B=16,
``robntk score --arch 2581``: 351 s against 154 s, bit-identical scores;
``benchmarks/RESULTS.md`` §9), while a small program loads faster than it compiles.

Where the cache lives, first match wins (:func:`resolve`):

1. the command line: ``--compile-cache DIR`` or ``--no-compile-cache`` (any command), or the
   ``option`` argument of :func:`enable` (a directory, or ``False``/``'off'``);
2. the environment variable ``ROBNTK_COMPILE_CACHE``: a directory, or ``off`` (empty = unset);
3. a cache directory already given to JAX itself (``JAX_COMPILATION_CACHE_DIR`` or
   ``jax.config.update('jax_compilation_cache_dir', ...)``), left as it is;
4. off on the CPU backend; else ``$XDG_CACHE_HOME/robntk/jax-cache``, else
   ``~/.cache/robntk/jax-cache`` (also the directory of ``option=True``).

JAX's cache holds every jitted program of the process that took at least
:data:`MIN_COMPILE_TIME_S` seconds to compile (``jax_persistent_cache_min_compile_time_secs``).
What JAX's cache key hashes (so what makes an entry miss): the lowered program (StableHLO, debug
info stripped), the compile options, the jaxlib version, the backend and its platform version,
the device kind/topology, and ``XLA_FLAGS`` (see ``jax/_src/cache_key.py``). A hit still traces
and lowers the function (seconds to tens of seconds for the engine) but skips XLA's compile; the
loaded executable is the one that was compiled, so results are bit-identical to a fresh compile
of the same program. The cache is trusted code: do not point it at a directory others can write
to, and do not share one between machines of different CPU types. Entries are never evicted
(JAX's eviction needs the optional ``filelock`` package); delete the directory to clear it.

:func:`status` says what this process does (directory, where the choice came from, and the
cache's hits and writes so far); it is recorded next to every score table
(:func:`robntk.scoring.config.provenance`).
"""

from __future__ import annotations

import os
import sys
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: Environment variable: a cache directory, or ``off``.
ENV_VAR = "ROBNTK_COMPILE_CACHE"
#: The value of :data:`ENV_VAR` (case-insensitive) or of ``option`` that turns the cache off.
OFF = "off"
#: Command-line flags handled by :func:`cli_hook` for every ``robntk`` command.
FLAG, NO_FLAG = "--compile-cache", "--no-compile-cache"
#: Programs that compile in at least this many seconds are written to JAX's cache
#: (``jax_persistent_cache_min_compile_time_secs``, set unless the user changed JAX's default
#: of 1 s). Low enough for the engine's function and the other programs worth caching, high
#: enough not to write hundreds of tiny eager-op entries.
MIN_COMPILE_TIME_S = 0.2
_JAX_DEFAULT_MIN_S = 1.0  # JAX's default of jax_persistent_cache_min_compile_time_secs
#: Subdirectory of the user cache directory.
SUBDIR = Path("robntk") / "jax-cache"

_EVENTS = {
    "/jax/compilation_cache/compile_requests_use_cache": "requests",
    "/jax/compilation_cache/cache_hits": "hits",
    "/jax/compilation_cache/cache_misses": "writes",
}
_lock = threading.Lock()
_state: dict[str, Any] = {"configured": False, "dir": None, "source": None}
_counts = {"requests": 0, "hits": 0, "writes": 0}
_saved_s = [0.0]
_listening = [False]


def default_cache_dir(environ: dict[str, str] | None = None) -> Path:
    """The default cache directory: ``$XDG_CACHE_HOME/robntk/jax-cache`` when ``XDG_CACHE_HOME``
    is set and absolute (the XDG Base Directory rule), else ``~/.cache/robntk/jax-cache``."""
    env = os.environ if environ is None else environ
    xdg = env.get("XDG_CACHE_HOME", "")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / SUBDIR
    home = env.get("HOME") or str(Path.home())
    return Path(home) / ".cache" / SUBDIR


def _check_dir(value, what: str) -> Path:
    text = os.fspath(value) if isinstance(value, (str, os.PathLike)) else None
    if not text:
        raise ValueError(f"{what} must be a directory or {OFF!r}, got {value!r}")
    path = Path(text).expanduser()
    if path.exists() and not path.is_dir():
        raise ValueError(f"{what} {str(path)!r} exists and is not a directory; give a directory or {OFF!r}")
    return path


def resolve(
    option=None, environ: dict[str, str] | None = None, jax_dir: str | None = None, backend: str | None = None
) -> tuple[Path | None, str]:
    """Where the cache is, by the precedence of the module docstring (nothing is created).

    Args:
        option: the explicit choice: None (not given), ``False`` or ``'off'`` (disabled), or a
            directory (str or path-like; ``~`` is expanded).
        environ: the environment (default ``os.environ``), read for :data:`ENV_VAR`,
            ``XDG_CACHE_HOME`` and ``HOME``.
        jax_dir: a directory already configured in JAX (default: ``jax_compilation_cache_dir``).
        backend: JAX's default backend (default: ``jax.default_backend()``); on ``'cpu'`` the
            cache is off unless chosen by ``option``, :data:`ENV_VAR` or ``jax_dir``.

    Returns:
        (directory or None when disabled, source): source is ``'option'``, ``'env'``, ``'jax'``,
        ``'cpu'`` (off by default on the CPU backend), ``'xdg'`` or ``'home'``.

    Raises:
        ValueError: ``option`` or :data:`ENV_VAR` is neither a directory nor ``off`` (e.g. an
            existing file, an empty string option, a number).
    """
    env = os.environ if environ is None else environ
    if option is not None:
        if option is False or (isinstance(option, str) and option.strip().lower() == OFF):
            return None, "option"
        if option is True:
            return _default(env)
        return _check_dir(option, "compile cache"), "option"
    value = env.get(ENV_VAR, "")
    if value.strip():
        if value.strip().lower() == OFF:
            return None, "env"
        return _check_dir(value, f"${ENV_VAR}"), "env"
    if jax_dir is None:
        import jax

        jax_dir = jax.config.jax_compilation_cache_dir
    if jax_dir:
        return Path(jax_dir), "jax"
    if backend is None:
        import jax

        backend = jax.default_backend()
    if backend == "cpu":  # loading from the cache costs more than compiling on XLA:CPU (module docstring)
        return None, "cpu"
    return _default(env)


def _default(env) -> tuple[Path, str]:
    xdg = env.get("XDG_CACHE_HOME", "")
    return default_cache_dir(env), "xdg" if xdg and os.path.isabs(xdg) else "home"


def _listen() -> None:
    """Count JAX's cache events (requests, hits, writes) and the compile seconds hits saved."""
    if _listening[0]:
        return
    import jax.monitoring as mon

    def on_event(event: str, **_kw) -> None:
        name = _EVENTS.get(event)
        if name is not None:
            _counts[name] += 1

    def on_duration(event: str, duration: float, **_kw) -> None:
        if event == "/jax/compilation_cache/compile_time_saved_sec":
            _saved_s[0] += float(duration)

    mon.register_event_listener(on_event)
    mon.register_event_duration_secs_listener(on_duration)
    _listening[0] = True


def enable(option=None) -> dict[str, Any]:
    """Turn JAX's persistent compilation cache on (or off) for this process, once.

    The first call decides (by :func:`resolve`); later calls without ``option`` keep that
    decision (so ``Engine`` after the command line's ``--no-compile-cache`` stays uncached),
    and a later explicit ``option`` switches to it. The directory is created here; if the
    *default* directory cannot be created the cache is left off with a :class:`RuntimeWarning`.

    Args:
        option: None (by the environment and defaults), ``False``/``'off'``, or a directory.

    Returns:
        :func:`status`.

    Raises:
        ValueError: a bad ``option`` or :data:`ENV_VAR` (:func:`resolve`), or an explicitly
            chosen directory that cannot be created (names it and the OS error).
    """
    import jax

    with _lock:
        if _state["configured"] and option is None:
            return status()
        path, source = resolve(option)
        if path is not None:
            try:
                path.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                if source in ("option", "env"):
                    raise ValueError(f"cannot create the compile cache directory {str(path)!r}: {exc}") from None
                warnings.warn(
                    f"compile cache off: cannot create {str(path)!r} ({exc}); set ${ENV_VAR}=DIR",
                    RuntimeWarning,
                    stacklevel=2,
                )
                path = None
        previous = jax.config.jax_compilation_cache_dir
        new = None if path is None else str(path.resolve())
        if _state["configured"] or (previous and previous != new):
            from jax.experimental.compilation_cache import compilation_cache as cc

            cc.reset_cache()  # JAX opens its cache once; switching directories needs a reset
        jax.config.update("jax_compilation_cache_dir", new)
        if new is not None:
            jax.config.update("jax_enable_compilation_cache", True)
            if jax.config.jax_persistent_cache_min_compile_time_secs == _JAX_DEFAULT_MIN_S:  # else the user's
                jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_TIME_S)
            _listen()
        _state.update(configured=True, dir=new, source=source)
        return status()


def status() -> dict[str, Any]:
    """What the cache does in this process (JSON-ready): ``enabled``, ``dir`` (absolute, or
    None), ``source`` (:func:`resolve`; None before :func:`enable`), ``min_compile_time_s``, and
    the cache events since :func:`enable`: JAX's ``requests`` (compiles that consulted the
    cache), ``hits`` (executables loaded), ``writes`` (executables stored), ``saved_s`` (compile
    seconds the hits saved, as recorded by JAX at write time); ``used`` is True when anything
    was loaded."""
    import jax

    return {
        "enabled": _state["dir"] is not None,
        "dir": _state["dir"],
        "source": _state["source"],
        "env_var": ENV_VAR,
        "min_compile_time_s": jax.config.jax_persistent_cache_min_compile_time_secs,
        **_counts,
        "saved_s": round(_saved_s[0], 3),
        "used": _counts["hits"] > 0,
    }


def counts() -> dict[str, int]:
    """A copy of the event counters of :func:`status`, to tell whether one compile in between
    loaded from the cache."""
    return dict(_counts)


def pop_cli_flags(argv: Sequence[str]) -> tuple[list[str], Any]:
    """Remove :data:`FLAG` ``DIR`` / ``--compile-cache=DIR`` / :data:`NO_FLAG` from a command line
    (anywhere before a bare ``--``; the last one wins).

    Returns:
        (the other arguments in order, option for :func:`enable`: None if absent, False for
        :data:`NO_FLAG`, else the directory string).

    Raises:
        ValueError: :data:`FLAG` without a directory.
    """
    rest, option, i, args = [], None, 0, list(argv)
    while i < len(args):
        tok = args[i]
        if tok == "--":
            rest += args[i:]
            break
        if tok == NO_FLAG:
            option = False
        elif tok == FLAG:
            if i + 1 >= len(args) or args[i + 1].startswith("-") or not args[i + 1]:
                raise ValueError(f"{FLAG} needs a directory (or use {NO_FLAG})")
            option = args[i + 1]
            i += 1
        elif tok.startswith(FLAG + "="):
            option = tok.split("=", 1)[1]
            if not option:
                raise ValueError(f"{FLAG}= needs a directory (or use {NO_FLAG})")
        else:
            rest.append(tok)
        i += 1
    return rest, option


def cli_hook(argv: Sequence[str] | None = None, prog: str = "robntk") -> list[str]:
    """The command line's part: take the cache flags out of ``argv`` (default ``sys.argv[1:]``),
    :func:`enable` the cache, and return the remaining arguments for the parser.

    Raises:
        SystemExit: exit code 2 after a one-line ``prog: error: ...`` on stderr, for a bad flag,
            a bad :data:`ENV_VAR` or a directory that cannot be created (argparse's convention).
    """
    try:
        rest, option = pop_cli_flags(sys.argv[1:] if argv is None else argv)
        enable(option)
    except ValueError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    return rest


def add_arguments(parser) -> None:
    """Document :data:`FLAG` and :data:`NO_FLAG` in an argparse parser's ``--help`` (the values
    are taken out of the command line by :func:`cli_hook` before the parser sees them)."""
    import argparse

    g = parser.add_argument_group("compilation cache")
    g.add_argument(
        FLAG,
        metavar="DIR",
        default=argparse.SUPPRESS,
        help=f"JAX persistent compilation cache directory (default ${ENV_VAR}, else "
        "$XDG_CACHE_HOME/robntk/jax-cache or ~/.cache/robntk/jax-cache)",
    )
    g.add_argument(
        NO_FLAG,
        action="store_true",
        default=argparse.SUPPRESS,
        help=f"compile without the persistent cache (or ${ENV_VAR}=off)",
    )
