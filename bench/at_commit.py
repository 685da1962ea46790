"""wsfast as committed, for the benchmarks: exported with ``git archive`` and
built outside the checkout, so that a figure belongs to a commit and never to
a work tree's uncommitted or uncompiled sources.

Every benchmark that starts wsfast servers takes ``--commit REV``::

    import at_commit
    at_commit.add_option(parser)
    env, info = at_commit.prepare(args.commit, workdir)   # env: for the server processes

The servers then import wsfast from ``at_commit.tree(env)``: the scripts in
``bench/servers/`` and the benchmarks' own ``--serve`` children put
``WSFAST_TREE`` first on ``sys.path``; ``python -m wsfast`` children run with
that directory as their working directory (``-m`` puts it first). Without
``--commit``, the tree is this checkout (its extension built in place).
"""

import os
import subprocess
import sys
import tarfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def git(*args):
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False).stdout.strip()


def wsfast_tree(commit, workdir):
    """wsfast at ``commit`` (git archive) in a new directory of ``workdir``,
    its extension built in place; returns (that directory, the full sha)."""
    sha = git("rev-parse", "--verify", "--quiet", f"{commit}^{{commit}}")
    if not sha:
        raise SystemExit(f"unknown commit {commit!r}")
    dest = os.path.join(workdir, f"wsfast-{sha[:12]}")
    archive = subprocess.run(["git", "archive", "--format=tar", sha, "wsfast", "setup.py", "pyproject.toml",
                              "README.md"], cwd=ROOT, capture_output=True, check=True).stdout
    os.makedirs(dest)
    tar_path = os.path.join(workdir, f"wsfast-{sha[:12]}.tar")
    with open(tar_path, "wb") as f:
        f.write(archive)
    with tarfile.open(tar_path) as tar:
        tar.extractall(dest)
    os.unlink(tar_path)
    env = dict(os.environ, WSFAST_REQUIRE_EXTENSIONS="1")
    build = subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=dest, env=env,
                           capture_output=True, text=True, check=False)
    if build.returncode:
        raise SystemExit(f"building wsfast {sha[:12]} in {dest} failed:\n{build.stderr[-2000:]}")
    return dest, sha


def add_option(parser):
    parser.add_argument("--commit", default=None, metavar="REV",
                        help="benchmark wsfast as committed at REV (e.g. HEAD): exported with git archive and "
                             "built in a temp dir outside the checkout (default: this checkout's in-place build)")


def tree(env=None):
    """The directory the servers import wsfast from."""
    return (os.environ if env is None else env).get("WSFAST_TREE") or ROOT


def probe(env):
    """(codec, directory) of the wsfast a server started with ``env`` imports."""
    code = "import os, wsfast; print(wsfast.IMPLEMENTATION, os.path.dirname(os.path.dirname(wsfast.__file__)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=tree(env), env=env, capture_output=True, text=True,
                         check=False)
    if out.returncode:
        raise SystemExit(f"wsfast does not import from {tree(env)}:\n{out.stderr[-2000:]}")
    codec, where = out.stdout.split(None, 1)
    return codec, where.strip()


def prepare(commit, workdir, env=None):
    """The environment for the server processes, and what it runs:
    ``{"commit", "dirty", "exported", "tree", "codec"}``. With ``commit``,
    wsfast is exported and built in ``workdir`` and checked to import from
    there with its extension."""
    env = dict(os.environ if env is None else env)
    env.pop("WSFAST_NO_EXTENSIONS", None)
    if commit:
        print(f"building wsfast at {commit} in {workdir} ...", file=sys.stderr, flush=True)
        where, sha = wsfast_tree(commit, workdir)
        env["WSFAST_TREE"] = where
        info = {"commit": sha, "dirty": False, "exported": True, "tree": where}
    elif env.get("WSFAST_TREE"):  # a wsfast put elsewhere by hand: say so, claim no commit
        info = {"commit": f"unknown (WSFAST_TREE={env['WSFAST_TREE']})", "dirty": True, "exported": False,
                "tree": env["WSFAST_TREE"]}
    else:
        info = {"commit": git("rev-parse", "HEAD") or "unknown",
                "dirty": bool(git("status", "--porcelain", "--", "wsfast")), "exported": False, "tree": ROOT}
    info["codec"], imported = probe(env)
    if os.path.realpath(imported) != os.path.realpath(info["tree"]):
        raise SystemExit(f"the servers would import wsfast from {imported}, not {info['tree']}")
    if commit and info["codec"] != "cython":
        raise SystemExit(f"wsfast {info['commit'][:12]} built without its extension (codec {info['codec']})")
    return env, info


def describe(info):
    """One line for a report: which wsfast ran, and from where."""
    if info["exported"]:
        return (f"wsfast `{info['commit'][:12]}` (exported with `git archive` and built outside the checkout; "
                f"codec {info['codec']})")
    by_hand = info["commit"].startswith("unknown (WSFAST_TREE=")  # prepare() claims no commit for it
    if by_hand or os.path.realpath(info["tree"]) != os.path.realpath(ROOT):
        return f"wsfast from {info['tree']} (codec {info['codec']})"
    dirty = ", with uncommitted changes" if info["dirty"] else ""
    return f"wsfast `{info['commit'][:12]}` (this checkout's in-place build{dirty}; codec {info['codec']})"
