"""``find_tools`` with the real local embedding model: plain-words requests find the right tool among 40.

The queries are phrased as a model writes a ``find_tools`` query: the task, in plain words. A riddle with no word or
concept in common with the tool ("the payments API is down, wake up whoever is on duty") is beyond this small model.
"""

from __future__ import annotations

import pytest

from botfactory.agents import ToolSearch
from botfactory.memory import OnnxMiniLMEmbedder
from botfactory.messages import ToolSpec

pytestmark = pytest.mark.integration

TOOLS = {
    "assign_copilot_seat": "Give a GitHub user a GitHub Copilot seat in the organization.",
    "remove_copilot_seat": "Revoke a user's GitHub Copilot seat so it can be reused.",
    "list_copilot_seats": "List who holds GitHub Copilot seats and when each was last used.",
    "create_github_repo": "Create a new GitHub repository in the organization.",
    "add_repo_collaborator": "Give a user write or admin access to a GitHub repository.",
    "invite_org_member": "Invite a person to join the GitHub organization.",
    "list_pull_requests": "List open pull requests of a GitHub repository.",
    "create_jira_issue": "Open a Jira issue (bug, task or story) in a project.",
    "transition_jira_issue": "Move a Jira issue to another status, e.g. In Progress or Done.",
    "search_jira_issues": "Search Jira issues with a JQL query.",
    "post_slack_message": "Post a message to a Slack channel.",
    "create_slack_channel": "Create a public or private Slack channel.",
    "invite_to_slack_channel": "Add people to an existing Slack channel.",
    "page_on_call": "Page the on-call engineer of a service through PagerDuty.",
    "acknowledge_incident": "Acknowledge a PagerDuty incident so escalation stops.",
    "get_on_call_schedule": "Show who is on call for a team this week.",
    "reset_password": "Send a password reset link to an employee's email address.",
    "unlock_account": "Unlock an Okta account locked after too many failed sign-ins.",
    "add_to_okta_group": "Add a user to an Okta group to grant application access.",
    "deactivate_user": "Deactivate a departing employee's accounts in every system.",
    "create_vm": "Provision a virtual machine with a given size and operating system.",
    "restart_service": "Restart a service in an environment (staging or production).",
    "scale_deployment": "Change the number of replicas of a Kubernetes deployment.",
    "get_service_logs": "Fetch recent log lines of a service.",
    "rollback_deployment": "Roll a deployment back to its previous release.",
    "rotate_api_key": "Rotate an API key and store the new value in the secrets vault.",
    "read_secret": "Read a secret's metadata from the vault (never its value).",
    "query_sales_database": "Run a read-only SQL query on the sales analytics database.",
    "export_report_csv": "Export a dashboard report as a CSV file.",
    "book_meeting_room": "Book a meeting room for a time slot.",
    "schedule_meeting": "Schedule a calendar meeting with attendees.",
    "request_vacation": "File a vacation or paid-time-off request for approval.",
    "submit_expense": "Submit an expense claim with a receipt for reimbursement.",
    "order_laptop": "Order a new laptop or monitor for an employee.",
    "lookup_employee": "Look up an employee's team, manager and location in the directory.",
    "create_invoice": "Create a customer invoice in the billing system.",
    "issue_refund": "Refund a customer's payment, fully or in part.",
    "get_subscription": "Show a customer's subscription plan, seats and renewal date.",
    "search_knowledge_base": "Search the internal documentation and how-to articles.",
    "translate_text": "Translate text into another language.",
}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("give someone a GitHub Copilot license", "assign_copilot_seat"),
        ("take away the copilot license from a leaver", "remove_copilot_seat"),
        ("alert the on-call engineer about an outage", "page_on_call"),
        ("I forgot my password", "reset_password"),
        ("add bob to the #release channel", "invite_to_slack_channel"),
        ("file a bug ticket", "create_jira_issue"),
        ("give the customer their money back", "issue_refund"),
        ("I need a week off in August", "request_vacation"),
        ("bring the web service back to the last version", "rollback_deployment"),
        ("find out who an employee's manager is", "lookup_employee"),
    ],
)
async def test_plain_requests_rank_the_right_tool_in_the_top_three(
    embedder: OnnxMiniLMEmbedder, query: str, expected: str
) -> None:
    specs = [ToolSpec(name=name, description=text, parameters={"type": "object"}) for name, text in TOOLS.items()]
    assert len(specs) == 40

    found = await ToolSearch(embedder).search(specs, query, k=3)

    assert expected in [s.name for s in found]
