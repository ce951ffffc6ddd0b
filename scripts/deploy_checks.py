"""Checks for deploy/ that no off-the-shelf tool does (run by scripts/check-deploy.sh).

  deploy_checks.py crd RENDERED.yaml SCHEMA.json
      every ServiceMonitor in a kustomize build matches the bundled schema;
  deploy_checks.py metrics SCRAPE.txt
      every metric the alerts and the Grafana dashboard query exists in a real scrape;
  deploy_checks.py serving LOG
      prints the data and admin addresses from preflightd's JSON "serving" log line.
"""
import json
import re
import sys


def crd(rendered, schema_path):
    import jsonschema  # installed with kubernetes-validate
    import yaml

    schema = json.load(open(schema_path))
    found = 0
    for doc in yaml.safe_load_all(open(rendered)):
        if doc and doc.get("kind") == "ServiceMonitor":
            jsonschema.validate(doc, schema)
            found += 1
    if not found:
        sys.exit(f"{rendered}: no ServiceMonitor to check")
    print(f"{rendered}: {found} ServiceMonitor valid")


def metric_names(text):
    return set(re.findall(r"\b((?:preflightd|process)_[a-z0-9_]+)\b", text))


def metrics(scrape_path):
    exported = set()
    for line in open(scrape_path):
        if line and not line.startswith("#"):
            exported.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    queried = metric_names(open("deploy/prometheus/alerts.yaml").read())
    dashboard = json.load(open("deploy/grafana/preflightd.json"))
    queried |= metric_names(json.dumps(dashboard))
    missing = sorted(name for name in queried if name not in exported)
    if missing:
        sys.exit(f"queried but not exported by preflightd: {', '.join(missing)}")
    print(f"{len(queried)} metric names in alerts and dashboard, all exported")


def serving(log_path):
    for line in open(log_path):
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("message") == "serving":
            print(entry["listen"], entry["admin"])
            return
    sys.exit(f"{log_path}: no serving line")


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    {"crd": crd, "metrics": metrics, "serving": serving}[command](*args)
