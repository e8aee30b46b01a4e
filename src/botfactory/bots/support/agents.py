"""The support bot's agents: an orchestrator that routes to a documentation specialist and a GitHub specialist."""

from __future__ import annotations

from collections.abc import Sequence

from botfactory.agents import Agent, Tool, ToolContext, tool
from botfactory.bots.support.github import GitHubCopilotClient
from botfactory.errors import KnowledgeError
from botfactory.memory import KnowledgeBase

__all__ = ["build_agents", "github_tools", "knowledge_tools"]

PASSAGES_PER_SEARCH = 3
MIN_PASSAGE_SCORE = 0.3
"""Passages scoring below this (cosine plus keyword boost) are unrelated to the query; measured on the shipped
docs: answerable questions score 0.5-0.9, an unrelated question 0.26."""
RELATIVE_PASSAGE_SCORE = 0.8
"""Passages scoring below this share of the best one are dropped: each passage costs the local model seconds of
prompt processing, and weak ones rarely hold the answer."""

ORCHESTRATOR_INSTRUCTIONS = """\
You are the support desk assistant of Acme's internal developer platform, answering engineers in chat.
Route every message to exactly one specialist:
- github: requests to grant, give or assign a GitHub Copilot license or seat to one or more GitHub users.
- knowledge: everything else: questions about the platform, tools, processes, policies or how to do something."""

KNOWLEDGE_INSTRUCTIONS = """\
You answer questions about Acme's internal developer platform using only its documentation.
The documentation is searched for you with search_docs; search again only if the passages miss the topic.
Answer from the returned passages only:
- Answer exactly the question asked, in at most three sentences: state the specific numbers, limits, commands \
or steps from the passages that answer it. Do not summarise what a page is about.
- In "sources", list the source path of every passage you used.
- If the passages do not contain the answer, set "answer" to "I don't know: the documentation does not \
cover that." and leave "sources" empty. Never guess or invent facts."""

GITHUB_INSTRUCTIONS = """\
You grant GitHub Copilot seats in the company's GitHub organization.
Call assign_copilot_seats with the GitHub usernames named in the request, exactly as written.
Then answer with one sentence saying which users got a seat, or what went wrong according to the tool."""

KNOWLEDGE_OUTPUT_SCHEMA = {
    "type": "object",
    "properties": {
        "answer": {"type": "string"},
        "sources": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["answer", "sources"],
    "additionalProperties": False,
}


def knowledge_tools(knowledge: KnowledgeBase) -> list[Tool]:
    """The documentation search tool, bound to a knowledge base."""

    @tool
    async def search_docs(query: str) -> str:
        """Search the internal platform documentation. Returns passages, each with its source path.

        Args:
            query: A few keywords or a short question.
        """
        try:
            found = await knowledge.search(query, k=PASSAGES_PER_SEARCH)
        except KnowledgeError as exc:
            return f"error: {exc.message}"
        best = max((p.score for p in found), default=0.0)
        passages = [p for p in found if p.score >= max(MIN_PASSAGE_SCORE, RELATIVE_PASSAGE_SCORE * best)]
        if not passages:
            return "No passages found: the documentation does not cover this."
        return "\n\n".join(f"[source: {p.source}] {p.heading}\n{p.text.strip()}" for p in passages)

    return [search_docs]


def github_tools(client: GitHubCopilotClient) -> list[Tool]:
    """The Copilot seat assignment tool, bound to a GitHub client (which holds the token)."""

    @tool
    async def assign_copilot_seats(usernames: list[str], ctx: ToolContext) -> str:
        """Assign a GitHub Copilot seat to each of the given GitHub users.

        Args:
            usernames: GitHub logins, e.g. ["octocat"].
        """
        created = await client.assign_seats(usernames, idempotency_key=ctx.idempotency_key)
        already = len(set(u.lower() for u in usernames)) - created
        note = f" ({already} already had a seat)" if already > 0 else ""
        return f"Copilot seats assigned to {', '.join(usernames)}: {created} new{note}."

    return [assign_copilot_seats]


def build_agents(
    knowledge: KnowledgeBase, github: GitHubCopilotClient, *, orchestrator_model: str = "large"
) -> tuple[Agent, Sequence[Agent]]:
    """The orchestrator and its two specialists."""
    search = knowledge_tools(knowledge)[0]
    knowledge_agent = Agent(
        name="knowledge",
        description="Answers questions about the internal developer platform from its documentation, with sources.",
        instructions=KNOWLEDGE_INSTRUCTIONS,
        model="large",
        tools=[search],
        prefetch=search,
        output_schema=KNOWLEDGE_OUTPUT_SCHEMA,
        tool_choice="required",
        max_steps=3,
        return_direct=True,
        input="user_message",
    )
    github_agent = Agent(
        name="github",
        description="Grants GitHub Copilot licenses (seats) to GitHub users.",
        instructions=GITHUB_INSTRUCTIONS,
        model="small",
        tools=github_tools(github),
        tool_choice="required",
        max_steps=3,
        return_direct=True,
        input="user_message",
    )
    orchestrator = Agent(
        name="support",
        instructions=ORCHESTRATOR_INSTRUCTIONS,
        model=orchestrator_model,
        tools=[knowledge_agent, github_agent],
        tool_choice="required",
        max_steps=2,
    )
    return orchestrator, (knowledge_agent, github_agent)
