"""A stand-in for `gcloud` in the launcher tests (run as `gcloud ARGS...` through a small shell
wrapper the tests put first on PATH). Each call is appended to $FAKE_DIR/calls as a JSON list;
the answers come from $FAKE_DIR/scenario.json, which the test writes:

    {"workers": 4,                         # the slice's hosts (lines of a status answer)
     "create": ["nocapacity", "ok"],       # successive answers to `tpu-vm create`
     "state": {"1": ["PREEMPTED"]},        # `tpu-vm describe` on the 1st VM; UNREACHABLE = no answer
     "queue": ["WAITING_FOR_RESOURCES", "ACTIVE"],   # `queued-resources describe`
     "job": {"1": ["running", "255"], "2": ["exited 0"]},  # the wrapper's status over ssh:
                                           # 255 = a dropped connection; "a|b|..." per worker
     "setup": ["255", "ok"], "start": ["ok"], "results": true}

A list gives the answers in turn, its last one repeating; a dict of lists keys them by VM (1 for
the first slice created, 2 for the second, ...). The fake also tracks whether the slice exists:
`create` makes it, `delete` removes it, and any other call on a missing slice gets NOT_FOUND."""
import json
import os
import sys

DEFAULTS = {"create": "ok", "state": "READY", "queue": "ACTIVE", "job": "running",
            "setup": "ok", "start": "ok"}


def take(scenario, key):
    """The next scripted answer for KEY on the current VM (the last one repeats)."""
    vm = scenario.get("vm", 0)
    answers = scenario.get(key, [DEFAULTS[key]])
    if isinstance(answers, dict):
        answers = answers.get(str(vm), [DEFAULTS[key]])
    seen = scenario.setdefault("seen", {})
    index = seen.get(f"{key}@{vm}", 0)
    seen[f"{key}@{vm}"] = index + 1
    return answers[min(index, len(answers) - 1)]


def fail(message, status=1):
    print(f"ERROR: (gcloud) {message}", file=sys.stderr)
    return status


def per_worker(scenario, answer, line):
    workers = scenario.get("workers", 1)
    parts = answer.split("|") if "|" in answer else [answer] * workers
    for index, part in enumerate(parts):
        print(line.format(host=f"t1v-w-{index}", answer=part))
    return 0


def ssh(scenario, command):
    kind = ("job" if " status " in command else "start" if " start " in command
            else "logs" if " logs " in command else "setup")
    if kind == "logs":
        return per_worker(scenario, "step 100: loss 0.25", "[{host}] {answer}")
    answer = take(scenario, kind)
    if answer == "255":
        print("ssh: connect to host 10.0.0.2 port 22: Connection timed out", file=sys.stderr)
        return 255
    if kind == "job":
        return per_worker(scenario, answer, "spade-jax-job {host} {answer}")
    if kind == "start":
        return per_worker(scenario, "started", "spade-jax-job {host} {answer}")
    return 0 if answer == "ok" else 1


def handle(scenario, argv):
    words = [a for a in argv if not a.startswith("-")]
    options = dict(a[2:].split("=", 1) for a in argv if a.startswith("--") and "=" in a)
    if words[0] == "storage":
        return 0 if scenario.get("results", True) else fail("NOT_FOUND: results.json")
    group, verb = words[2], words[3]  # compute tpus tpu-vm|queued-resources VERB
    if verb == "create":
        if group == "tpu-vm" and take(scenario, "create") == "nocapacity":
            return fail("There is no more capacity in the zone")
        scenario["vm"] = scenario.get("vm", 0) + 1
        scenario["exists"] = True
        return 0
    if not scenario.get("exists"):
        return fail(f"NOT_FOUND: {words[4]}")
    if verb == "delete":
        scenario["exists"] = False
        return 0
    if verb == "describe":
        answer = take(scenario, "queue" if group == "queued-resources" else "state")
        if answer == "UNREACHABLE":
            return fail("There was a problem refreshing your current auth tokens: network is "
                        "unreachable")
        print(answer)
        print("\nUpdates are available for some Google Cloud CLI components.", file=sys.stderr)
        return 0
    if verb == "ssh":
        return ssh(scenario, options["command"])
    return 0  # scp


def main(argv):
    folder = os.environ["FAKE_DIR"]
    with open(os.path.join(folder, "calls"), "a") as calls:
        calls.write(json.dumps(argv) + "\n")
    path = os.path.join(folder, "scenario.json")
    with open(path) as f:
        scenario = json.load(f)
    try:
        return handle(scenario, argv)
    finally:
        with open(path + ".tmp", "w") as f:
            json.dump(scenario, f)
        os.replace(path + ".tmp", path)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
