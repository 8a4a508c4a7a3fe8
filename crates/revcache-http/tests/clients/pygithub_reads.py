"""A realistic read of one repository with PyGithub, printed as canonical JSON.

Usage: pygithub_reads.py BASE_URL TOKEN OWNER/NAME

Reads the repository, its open issues (every page), its open pulls (every
page) and, for each pull, the pull itself, its commits, reviews, issue
comments and labels, and the combined status and check runs of its head
commit; every list is read two items a page. Prints
{"read": <what it read>, "responses": [[status, cache-status], ...]}: the
second part lists every HTTP answer the client got, for the test to count.

PyGithub navigates by the absolute URLs in the JSON it read (`url` of a
repository or pull): one on another host, or on the base URL's host with
another port, fails its `assert o.port == self.__port` (or the domain
check), so through a proxy that left the upstream's URLs in bodies it
could not go past the first object.
"""

import json
import sys

import requests
from github import Auth, Github

responses = []
_send = requests.Session.send


def _recording_send(self, request, **kwargs):
    # Observation only: what came back, and revcache's verdict on it.
    response = _send(self, request, **kwargs)
    responses.append([response.status_code, response.headers.get("cache-status", "")])
    return response


requests.Session.send = _recording_send


def parsed(obj):
    """The JSON the client parsed for `obj`, without the completion request
    that `raw_data` makes for a partial object (the fake has no
    /issues/comments/{id} or /labels/{name})."""
    return obj._rawData


def main():
    base, token, full_name = sys.argv[1:4]
    # No retries, and none of the pause PyGithub keeps between requests to
    # github.com (a quarter of a second): loopback, and a test.
    gh = Github(
        base_url=base,
        auth=Auth.Token(token),
        per_page=2,
        retry=None,
        seconds_between_requests=None,
    )
    repo = gh.get_repo(full_name)
    read = {"repo": repo.raw_data, "issues": [], "pulls": []}
    for issue in repo.get_issues(state="open"):
        read["issues"].append(parsed(issue))
    for listed in repo.get_pulls(state="open", sort="created", direction="asc"):
        pull = repo.get_pull(listed.number)
        head = repo.get_commit(pull.head.sha)
        read["pulls"].append(
            {
                "listed": parsed(listed),
                "pull": pull.raw_data,
                "commits": [parsed(c) for c in pull.get_commits()],
                "reviews": [r.raw_data for r in pull.get_reviews()],
                "head": head.raw_data,
                "status": head.get_combined_status().raw_data,
                "check_runs": [parsed(c) for c in head.get_check_runs()],
                "comments": [parsed(c) for c in pull.get_issue_comments()],
                "labels": [parsed(label) for label in pull.get_labels()],
            }
        )
    json.dump({"read": read, "responses": responses}, sys.stdout, sort_keys=True, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
