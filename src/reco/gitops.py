"""Releases as commits: the model version (and image tag) that serves an environment is written in git.

Each environment's overlay holds one release file, ``gitops/overlays/<env>/release.yaml``, with exactly two
values, ``image_tag`` and ``model_version``; Kustomize puts them into the Rollout's pod template, so a new
value is a new pod template and Argo Rollouts runs a canary. These functions edit only those two values
(comments and layout stay), and make exactly one commit:

* ``promote``: the gate's champion (or any version) becomes the release. ``staging`` commits on the current
  branch (Argo CD syncs it); ``prod`` commits on a new branch ``release/prod-model-<N>-<UTC time>`` for a pull
  request and returns to the branch it started from — never a commit on prod's main.
* ``revert``: a commit that writes the release file as it was before the latest change to it.
* ``abort``: what an aborted canary triggers — the revert, plus the registry told (``canary=aborted`` on the
  version, the champion alias moved back if it pointed at it), so git, registry and cluster agree again.

A dirty working tree, an unknown environment, a release that would not change: a clear ``GitOpsError``,
and nothing committed.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import re
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from reco.errors import RecoError
from reco.settings import Settings

RELEASE_FILE = "release.yaml"
OVERLAYS = Path("gitops") / "overlays"
PR_ENVIRONMENTS = frozenset({"prod"})
_VALUE = r'^(\s*{key}:\s*)"?([^"\n#]*?)"?(\s*(?:#.*)?)$'


class GitOpsError(RecoError):
    """A release that cannot be made as asked; nothing was committed."""


@dataclass
class Release:
    image_tag: str
    model_version: str


@dataclass
class Commit:
    """The commit made: its sha, the branch it is on, and the release before and after."""

    sha: str
    branch: str
    before: Release
    after: Release
    message: str


def _git(repo: Path, *args: str) -> str:
    try:
        done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=60)
    except OSError as error:
        raise GitOpsError(f"git cannot run here: {error}") from error
    if done.returncode != 0:
        raise GitOpsError(f"git {' '.join(args)} failed in {repo}: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout.strip()


def release_path(repo: Path, env: str) -> Path:
    """The release file of ``env``; a ``GitOpsError`` naming the known environments if there is none."""
    path = repo / OVERLAYS / env / RELEASE_FILE
    if not path.is_file():
        known = sorted(p.parent.name for p in (repo / OVERLAYS).glob(f"*/{RELEASE_FILE}"))
        raise GitOpsError(f"unknown environment {env!r}: no {path.relative_to(repo)}; known: {', '.join(known) or 'none'}")
    return path


def read_release(text: str) -> Release:
    values = {}
    for key in ("image_tag", "model_version"):
        match = re.search(_VALUE.format(key=key), text, flags=re.MULTILINE)
        if match is None:
            raise GitOpsError(f"the release file has no {key}")
        values[key] = match.group(2).strip()
    return Release(**values)


def write_release(text: str, release: Release) -> str:
    """``text`` with the two values replaced (quoted), every other byte unchanged."""
    for key, value in (("image_tag", release.image_tag), ("model_version", release.model_version)):
        pattern = re.compile(_VALUE.format(key=key), flags=re.MULTILINE)
        match = pattern.search(text)
        if match is None:
            raise GitOpsError(f"the release file has no {key}")
        text = f'{text[: match.start()]}{match.group(1)}"{value}"{match.group(3)}{text[match.end() :]}'
    return text


def _check_clean(repo: Path) -> None:
    _git(repo, "rev-parse", "--git-dir")
    dirty = _git(repo, "status", "--porcelain")
    if dirty:
        first = dirty.splitlines()[0]
        raise GitOpsError(f"the working tree of {repo} has uncommitted changes ({first} …): commit or stash them first")


def _commit(repo: Path, env: str, path: Path, text: str, message: str) -> tuple[str, str]:
    """Write ``text`` to ``path`` and commit it alone; for a PR environment, on a new branch."""
    start = _git(repo, "rev-parse", "--abbrev-ref", "HEAD")
    branch = start
    if env in PR_ENVIRONMENTS:
        branch = f"release/{env}-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}"
        _git(repo, "checkout", "-q", "-b", branch)
    try:
        path.write_text(text)
        _git(repo, "add", "--", str(path.relative_to(repo)))
        _git(repo, "commit", "-q", "-m", message, "--", str(path.relative_to(repo)))
        sha = _git(repo, "rev-parse", "HEAD")
    except GitOpsError:
        _git(repo, "checkout", "-q", "--", str(path.relative_to(repo)))
        if branch != start:
            _git(repo, "checkout", "-q", start)
            _git(repo, "branch", "-q", "-D", branch)
        raise
    if branch != start:
        _git(repo, "checkout", "-q", start)
    return sha, branch


def is_remote(spec: str) -> bool:
    """Whether ``spec`` names a repository to clone (URL, scp-like ``git@host:path``) rather than a checkout."""
    return "://" in spec or re.match(r"^[\w.-]+@[\w.-]+:", spec) is not None


@contextlib.contextmanager
def checkout(spec: str, *, token: str = "") -> Iterator[tuple[Path, bool]]:
    """(working tree, remote?) of the GitOps repository ``spec``: a local checkout as it is, or a fresh clone of a
    URL into a temporary folder, removed afterwards (a pod has no checkout of its own). ``token`` authorises an
    HTTPS clone and push (sent as the basic-auth password, which GitHub and GitLab accept for tokens); it is
    kept in the temporary clone's config only. Commits in a pod get an identity of their own."""
    if not is_remote(spec):
        yield Path(spec).resolve(), False
        return
    with tempfile.TemporaryDirectory(prefix="reco-gitops-") as tmp:
        clone = Path(tmp) / "repo"
        auth = []
        if token:
            basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
            auth = ["-c", f"http.extraHeader=Authorization: Basic {basic}"]
        try:
            done = subprocess.run(["git", *auth, "clone", "-q", spec, str(clone)], capture_output=True, text=True,
                                  timeout=300)  # fmt: skip
        except OSError as error:
            raise GitOpsError(f"git cannot run here: {error}") from error
        if done.returncode != 0:
            raise GitOpsError(f"cannot clone {spec}: {done.stderr.strip().replace(token, '***') if token else done.stderr.strip()}")
        if token:
            _git(clone, "config", "http.extraHeader", auth[1].split("=", 1)[1])
        if not _git_config(clone, "user.email"):
            _git(clone, "config", "user.email", "reco-bot@reco-articles.invalid")
            _git(clone, "config", "user.name", "reco (pipeline)")
        yield clone, True


def _git_config(repo: Path, key: str) -> str:
    try:
        return _git(repo, "config", "--get", key)
    except GitOpsError:
        return ""


def push(repo: Path, branch: str) -> None:
    """Push ``branch`` to the checkout's ``origin`` (a refused push is a clear error)."""
    _git(repo, "push", "-q", "origin", f"{branch}:{branch}")


def promote(
    repo: Path,
    env: str,
    model_version: str | None,
    *,
    image_tag: str | None = None,
    reason: str = "",
    run_date: str = "",
) -> Commit:
    """One commit making ``model_version`` (and ``image_tag``, if given) the release of ``env``; ``model_version``
    None keeps the one released (an image release: the release workflow's promotion of a new build)."""
    path = release_path(repo, env)
    _check_clean(repo)
    text = path.read_text()
    before = read_release(text)
    after = Release(image_tag=image_tag or before.image_tag, model_version=str(model_version or before.model_version))
    if after == before:
        raise GitOpsError(f"{env} already releases model version {after.model_version} with image {after.image_tag}")
    image = f", image {after.image_tag}" if after.image_tag != before.image_tag else ""
    message = (
        f"release({env}): model version {after.model_version}{image}\n\n"
        f"Replaces model version {before.model_version} (image {before.image_tag}).\n"
        f"Gate: {reason or 'not given'}\nRun date: {run_date or 'not given'}\n"
    )
    sha, branch = _commit(repo, env, path, write_release(text, after), message)
    return Commit(sha, branch, before, after, message)


def revert(repo: Path, env: str, *, why: str = "") -> Commit:
    """One commit writing ``env``'s release file as it was before its latest change."""
    path = release_path(repo, env)
    _check_clean(repo)
    relative = str(path.relative_to(repo))
    last = _git(repo, "log", "-n", "1", "--format=%H", "--", relative)
    try:
        previous_text = _git(repo, "show", f"{last}^:{relative}")
    except GitOpsError as error:
        raise GitOpsError(f"{relative} has no earlier release to go back to") from error
    text = path.read_text()
    before, after = read_release(text), read_release(previous_text)
    if after == before:
        raise GitOpsError(f"the release before {last[:10]} is the same as the current one: nothing to revert")
    message = (
        f"revert({env}): back to model version {after.model_version} (image {after.image_tag})\n\n"
        f"Reverts model version {before.model_version} (image {before.image_tag}), released by {last[:10]}.\n"
        f"Why: {why or 'not given'}\n"
    )
    sha, branch = _commit(repo, env, path, write_release(text, after), message)
    return Commit(sha, branch, before, after, message)


@dataclass
class Abort:
    """What an aborted canary changed: the revert commit (None if git no longer released it) and the registry."""

    revert: Commit | None
    tagged: str
    champion: str


def abort(settings: Settings, repo: Path, env: str, model_version: str) -> Abort:
    """After Argo Rollouts aborted the canary of ``model_version`` in ``env``: revert the release if git still
    names that version, tag the version ``canary=aborted``, and move ``champion`` back if it points at it.

    Safe to repeat (a notification delivered twice): each part is skipped when already done.
    """
    from reco.registry import mark_canary_aborted

    current = read_release(release_path(repo, env).read_text())
    commit = None
    if current.model_version == str(model_version):
        commit = revert(repo, env, why=f"Argo Rollouts aborted the canary of model version {model_version} in {env}")
    tagged, champion = mark_canary_aborted(settings, str(model_version), env)
    return Abort(commit, tagged, champion)
