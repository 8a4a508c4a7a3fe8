"""Plots bench/soak's samples.csv: RSS and open files of the revcache
process over the run, the data dir's allocated size and the request
rate, to one PNG.

usage: plot.py SAMPLES_CSV OUT_PNG TITLE
"""
import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

samples, out, title = sys.argv[1], sys.argv[2], sys.argv[3]
rows = list(csv.DictReader(open(samples)))
minutes = [int(r["seconds"]) / 60 for r in rows]
rss = [int(r["rss_kib"]) / 1024 for r in rows]
fds = [int(r["fds"]) for r in rows]
disk = [int(r.get("disk_kib") or 0) / 1024 for r in rows]
requests = [int(r["requests"]) for r in rows]
rate = [0] + [(b - a) / max(1, int(t2["seconds"]) - int(t1["seconds"]))
              for a, b, t1, t2 in zip(requests, requests[1:], rows, rows[1:])]

fig, axes = plt.subplots(4, 1, figsize=(10, 10), sharex=True)
axes[0].plot(minutes, rss, color="tab:blue", linewidth=0.8)
axes[0].set_ylabel("RSS (MiB)")
axes[0].set_ylim(bottom=0)
axes[1].plot(minutes, fds, color="tab:orange", linewidth=0.8)
axes[1].set_ylabel("open files")
axes[1].set_ylim(bottom=0)
axes[2].plot(minutes, disk, color="tab:purple", linewidth=0.8)
axes[2].set_ylabel("data dir (MiB)")
axes[2].set_ylim(bottom=0)
axes[3].plot(minutes, rate, color="tab:green", linewidth=0.5)
axes[3].set_ylabel("requests/s")
axes[3].set_ylim(bottom=0)
axes[3].set_xlabel("minutes")
fig.suptitle(title)
fig.tight_layout()
fig.savefig(out, dpi=100)
