"""The grader's report: the score table on stdout and Gradescope's results.json."""
import json
import os

LABELS = {"passed": "PASS", "failed": "FAIL", "skipped": "SKIP", "timeout": "TIMEOUT",
          "crashed": "CRASH"}


def number(x):
    """2 for 2.0, 0.5 for 0.5: points read as they were written."""
    return int(x) if float(x).is_integer() else round(float(x), 4)


def totals(results):
    score = sum(r.score for r in results)
    max_score = sum(r.max_score for r in results)
    passed = sum(r.outcome == "passed" for r in results)
    skipped = sum(r.outcome == "skipped" for r in results)
    return number(score), number(max_score), passed, len(results) - passed - skipped, skipped


def summary(hw, results):
    score, max_score, passed, failed, skipped = totals(results)
    return (f"{hw}: {score}/{max_score} points "
            f"({passed} passed, {failed} failed, {skipped} skipped)")


def print_table(hw, results):
    """One row per test: result, points scored/possible, name; below a failure or a skip,
    its first line."""
    width = max([len(label) for label in LABELS.values()])
    points = [f"{number(r.score)}/{number(r.max_score)}" for r in results]
    points_width = max([len(p) for p in points] + [6])
    print(f"{'RESULT':<{width}}  {'POINTS':>{points_width}}  TEST")
    for result, pts in zip(results, points):
        hidden = "  (hidden)" if result.hidden else ""
        print(f"{LABELS[result.outcome]:<{width}}  {pts:>{points_width}}  "
              f"{result.name}{hidden}")
        if result.message and (result.outcome != "passed" or result.fraction < 1):
            print(f"{'':<{width}}  {'':>{points_width}}    {result.message}")
    print(summary(hw, results))


def gradescope_test(result):
    if result.outcome == "passed":
        output = result.message if result.fraction < 1 else ""
    elif result.outcome == "skipped":
        output = f"Test skipped (not graded): {result.message}"
    else:
        output = "\n\n".join(part for part in (result.message, result.output) if part)
    return {
        "name": result.name,
        "score": number(result.score),
        "max_score": number(result.max_score),
        # Gradescope has no neutral status: a skipped test (0 of 0 points) shows as passed,
        # and extra_data.outcome says what happened.
        "status": "passed" if result.outcome in ("passed", "skipped") else "failed",
        "output": output,
        "visibility": "after_due_date" if result.hidden else "visible",
        "extra_data": {"kind": result.kind, "outcome": result.outcome,
                       "not_implemented": result.not_implemented,
                       "duration": round(result.duration, 3)},
    }


def write_results(path, hw, results, execution_time, notes=()):
    """Writes results.json atomically (a reader never sees half a file)."""
    score = totals(results)[0]
    document = {
        "score": score,
        "execution_time": round(execution_time, 1),
        "output": "\n".join([summary(hw, results), *notes]),
        "tests": [gradescope_test(r) for r in results],
    }
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    temp = f"{path}.tmp-{os.getpid()}"
    with open(temp, "w", encoding="utf-8") as f:
        json.dump(document, f, indent=1)
        f.write("\n")
    os.replace(temp, path)
