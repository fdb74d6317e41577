"""Review with a score: a reviewer session reads an attempt's diff and scores it.

A task with ``review:`` (or a ``review:`` in ``defaults``, for tasks whose work is in a copy)
is reviewed after its verify commands pass and before its work lands. The reviewer is a
read-only session (``conductor.asking``: Read, Grep and Glob in the attempt's copy, no edits,
no commands) given the task, its acceptance criteria and the diff against the snapshot. It
answers pass/fail, a score from 0 to 100 per criterion with a comment, and overall comments.

The review passes when the reviewer says pass and the mean of its scores reaches
``threshold``. A score must be a number from 0 to 100: anything else (a string, a bool, 150)
is left out, a criterion left unscored counts as 0 in the mean, and an answer with no valid
score at all is a rejected round. Otherwise the attempt fails with the review as its
feedback, so the next attempt's worker reads it, until ``max_rounds`` reviews have rejected
the task: then it fails for good. A review that cannot be done (the session fails) is a
rejected round: unreviewed work never lands. Every review is a ``REVIEW_RESULT`` message:
round, score, threshold, passed, the scores, the comments, what it cost.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

from conductor.track import Review, Task, Track

SYSTEM = """You review one change to a repository for a team of software agents. Read the
diff you are given and, where you need more, the files of the repository (Read, Grep, Glob).
Score the change against each criterion from 0 (not met) to 100 (fully met), with one short,
concrete comment per criterion that a developer can act on. Pass it only when it meets every
criterion. Never change anything."""

REVIEWER_ROLE = "You are a meticulous senior code reviewer."

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "passed": {"type": "boolean"},
        "scores": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "criterion": {"type": "string"},
                    "score": {"type": "integer", "minimum": 0, "maximum": 100},
                    "comment": {"type": "string"},
                },
                "required": ["criterion", "score", "comment"],
            },
        },
        "comments": {"type": "string"},
    },
    "required": ["passed", "scores", "comments"],
}


@dataclass(frozen=True)
class Verdict:
    """One review of one attempt."""

    passed: bool
    """The reviewer said pass and the score reached the threshold."""
    score: float
    """Mean of the criteria's scores, 0–100 (0 when the review could not be done)."""
    scores: list[dict[str, Any]] = field(default_factory=list)
    """``{criterion, score, comment}`` per criterion."""
    comments: str = ""
    """The reviewer's overall comments."""
    cost_usd: float = 0.0
    """What the review cost."""
    agent: str = "reviewer"
    """Who reviewed."""
    error: str | None = None
    """Why the review could not be done."""

    def feedback(self, round_: int, review: Review) -> str:
        """The review as the next attempt's worker reads it."""
        verdict = "passed" if self.passed else "rejected"
        head = (
            f"review round {round_} of {review.max_rounds} {verdict} the work: score "
            f"{self.score:.0f}, needs {review.threshold}"
        )
        if self.error:
            return f"{head}; the review could not be done: {self.error}"
        comments = self.comments.strip()
        lines = [f"{head}. {comments}" if comments else head]
        for item in self.scores:
            lines.append(f"{item['criterion']} ({item['score']}): {item['comment']}")
        return "\n".join(lines)


def criteria(task: Task, review: Review) -> list[str]:
    """What the reviewer scores: the review's criteria, else the task's acceptance."""
    return list(review.criteria or task.acceptance or [f"The change does: {task.name}"])


def question(task: Task, wanted: list[str], diff: str) -> str:
    """What the reviewer is asked."""
    lines = [f"Review the change made for task {task.id}: {task.name}"]
    if task.instructions:
        lines += ["", "The task's instructions:", task.instructions.strip()]
    lines += ["", "Score each criterion:"]
    lines += [f"{n}. {c}" for n, c in enumerate(wanted, 1)]
    # A fence longer than any run of backticks in the diff: a changed line holding ``` cannot
    # close it early and pass the rest of itself off as the question.
    fence = "`" * max([3, *(len(run) + 1 for run in re.findall("`+", diff))])
    lines += ["", "The diff against the state the work started from:", f"{fence}diff", diff, fence]
    return "\n".join(lines)


async def review_attempt(
    track: Track,
    task: Task,
    review: Review,
    *,
    repo: Path,
    workdir: Path,
    diff: str,
    log_path: Path | None = None,
    max_budget_usd: float | None = None,
    state_root: Path | None = None,
) -> Verdict:
    """Review the attempt whose copy is ``workdir`` and whose change is ``diff``; the
    reviewer reads nothing else of ``state_root`` (conductor's state)."""
    from conductor.agents import AgentError, AgentRegistry
    from conductor.asking import AskError, ask

    system, model, who = f"{REVIEWER_ROLE}\n\n{SYSTEM}", track.model, "reviewer"
    if review.agent:
        try:
            as_reviewer = task.model_copy(update={"agent": review.agent})
            reviewer = AgentRegistry(track, repo).resolve(as_reviewer)
        except AgentError as exc:
            return Verdict(passed=False, score=0.0, agent=review.agent, error=exc.message)
        system = f"{reviewer.system_prompt}\n\n{SYSTEM}"
        model, who = reviewer.model or model, reviewer.name
    wanted = criteria(task, review)
    try:
        answer = await ask(
            question(task, wanted, diff),
            SCHEMA,
            system=system,
            cwd=workdir,
            model=model,
            max_budget_usd=max_budget_usd,
            log_path=log_path,
            state_root=state_root,
        )
    except AskError as exc:
        return Verdict(passed=False, score=0.0, cost_usd=exc.cost_usd, agent=who, error=exc.message)
    data = answer.data if isinstance(answer.data, dict) else {}
    scores: list[dict[str, Any]] = []
    items = data.get("scores")
    for item in items if isinstance(items, list) else []:
        value = item.get("score") if isinstance(item, dict) else None
        if _valid_score(value):
            scores.append(
                {
                    "criterion": str(item.get("criterion", "")),
                    "score": int(value),
                    "comment": str(item.get("comment", "")),
                }
            )
    if not scores:
        return Verdict(
            passed=False,
            score=0.0,
            cost_usd=answer.cost_usd,
            agent=who,
            error="the reviewer gave no scores from 0 to 100",
        )
    # A criterion left unscored counts as 0: skipping one never raises the mean.
    score = sum(int(item["score"]) for item in scores) / max(len(scores), len(wanted))
    return Verdict(
        passed=data.get("passed") is True and score >= review.threshold,
        score=round(score, 1),
        scores=scores,
        comments=str(data.get("comments") or ""),
        cost_usd=answer.cost_usd,
        agent=who,
    )


def _valid_score(value: Any) -> TypeGuard[int | float]:
    """A score as the schema asks: a number from 0 to 100 (not a bool, not NaN). One out of
    range is refused rather than clamped, so a runaway 100000 passes nothing."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isfinite(value) and 0 <= value <= 100
