// A realistic read of one repository with @octokit/rest, printed as
// canonical JSON.
//
// Usage: node octokit_reads.mjs BASE_URL TOKEN OWNER/NAME NODE_DIR
// (NODE_DIR holds node_modules/@octokit/rest).
//
// Reads the repository, its open issues (every page), its open pulls (every
// page) and, for each pull, the pull itself, its commits, reviews, issue
// comments and labels, and the combined status and check runs of its head
// commit; every list is read two items a page with octokit.paginate. Prints
// {"read": <what it read>, "responses": [[status, cache-status], ...]}: the
// second part lists every HTTP answer the client got, for the test to count.

import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";

const [base, token, fullName, nodeDir] = process.argv.slice(2);
const require = createRequire(`${nodeDir}/`);
const { Octokit } = await import(pathToFileURL(require.resolve("@octokit/rest")).href);

const octokit = new Octokit({ auth: token, baseUrl: base });
const responses = [];
octokit.hook.after("request", (response) => {
  responses.push([response.status, response.headers["cache-status"] ?? ""]);
});

const [owner, repo] = fullName.split("/");
const perPage = { owner, repo, per_page: 2 };
const read = {
  repo: (await octokit.rest.repos.get({ owner, repo })).data,
  issues: await octokit.paginate(octokit.rest.issues.listForRepo, { ...perPage, state: "open" }),
  pulls: [],
};
const pulls = await octokit.paginate(octokit.rest.pulls.list, {
  ...perPage,
  state: "open",
  sort: "created",
  direction: "asc",
});
for (const listed of pulls) {
  const number = listed.number;
  const pull = (await octokit.rest.pulls.get({ owner, repo, pull_number: number })).data;
  const ref = pull.head.sha;
  read.pulls.push({
    listed,
    pull,
    commits: await octokit.paginate(octokit.rest.pulls.listCommits, { ...perPage, pull_number: number }),
    reviews: await octokit.paginate(octokit.rest.pulls.listReviews, { ...perPage, pull_number: number }),
    head: (await octokit.rest.repos.getCommit({ owner, repo, ref })).data,
    status: (await octokit.rest.repos.getCombinedStatusForRef({ owner, repo, ref })).data,
    check_runs: await octokit.paginate(octokit.rest.checks.listForRef, { ...perPage, ref }),
    comments: await octokit.paginate(octokit.rest.issues.listComments, { ...perPage, issue_number: number }),
    labels: await octokit.paginate(octokit.rest.issues.listLabelsOnIssue, { ...perPage, issue_number: number }),
  });
}

function canonical(v) {
  if (Array.isArray(v)) return v.map(canonical);
  if (v !== null && typeof v === "object") {
    return Object.fromEntries(Object.keys(v).sort().map((k) => [k, canonical(v[k])]));
  }
  return v;
}
process.stdout.write(`${JSON.stringify(canonical({ read, responses }), null, 1)}\n`);
