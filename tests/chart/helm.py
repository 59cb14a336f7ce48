"""The chart tests' bridge to Helm (helm-python-sdk: Helm 4 as a library).

  helm.py lint CHART                          -> JSON: helm lint --strict's messages
  helm.py render CHART RELEASE NAMESPACE      -> JSON: {template: manifest}, values as JSON on stdin
  helm.py deploy CHART DIR                    -> writes DIR's plain manifests from the default values
"""
import json
import sys

from helm_python import chart

# Labels that only say Helm made the object; deploy/ is applied with kubectl instead.
HELM_ONLY_LABELS = ("helm.sh/chart: ", "app.kubernetes.io/managed-by: ")


def render(path, release, namespace, values):
    loaded = chart.Chart.load(path)
    try:
        out = loaded.render(values or None, name=release, namespace=namespace, is_install=True)
    finally:
        loaded.close()
    return {k: v for k, v in out.items() if v.strip()}


def main():
    command = sys.argv[1]
    if command == "lint":
        result = chart.lint(sys.argv[2], strict=True)
        json.dump(result, sys.stdout)
    elif command == "render":
        values = json.load(sys.stdin)
        try:
            json.dump({"manifests": render(sys.argv[2], sys.argv[3], sys.argv[4], values)}, sys.stdout)
        except Exception as e:  # the test asserts on the message of a refused value
            json.dump({"error": str(e)}, sys.stdout)
    elif command == "deploy":
        target = sys.argv[3]
        manifests = render(sys.argv[2], "sequencer", "sequencer-system", {})
        written = []
        for template, text in sorted(manifests.items()):
            if not template.endswith(".yaml"):
                continue
            name = template.rsplit("/", 1)[-1]
            lines = [l for l in text.strip().splitlines() if not l.strip().startswith(HELM_ONLY_LABELS)]
            header = "# Generated from charts/sequencer (default values) by tests/chart/helm.py deploy; do not edit.\n"
            with open(f"{target}/{name}", "w") as f:
                f.write(header + "\n".join(lines).strip() + "\n")
            written.append(name)
        json.dump({"written": written}, sys.stdout)
    else:
        sys.exit(f"unknown command {command}")


if __name__ == "__main__":
    main()
