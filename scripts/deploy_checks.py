"""Checks for deploy/ that no off-the-shelf tool does (run by scripts/check-deploy.sh).

  deploy_checks.py crd RENDERED.yaml SCHEMA...
      every custom resource in a kustomize build matches its schema: a JSON schema
      (ServiceMonitor: deploy/k8s/schemas/servicemonitor.schema.json) or a CustomResourceDefinition
      whose openAPIV3Schema is used, made strict (unknown fields fail) as the API server's
      pruning would drop them (cert-manager's Certificate CRD, vendored unmodified from
      github.com/cert-manager/cert-manager deploy/crds, Apache-2.0);
  deploy_checks.py metrics SCRAPE.txt
      every metric the alerts and the Grafana dashboard query exists in a real scrape;
  deploy_checks.py serving LOG
      prints the data and admin addresses from preflightd's JSON "serving" log line.
"""
import json
import re
import sys


def strict(schema):
    """The schema with additionalProperties false wherever it lists properties and says
    nothing else about unknown ones: a misspelt field fails, as kubeconform --strict does."""
    if isinstance(schema, dict):
        schema = {k: strict(v) for k, v in schema.items()}
        if ("properties" in schema and "additionalProperties" not in schema
                and not schema.get("x-kubernetes-preserve-unknown-fields")):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    return schema


def load_schema(path):
    """(kind, schema) from a JSON schema file or a CRD's served version."""
    import yaml

    if path.endswith(".json"):
        schema = json.load(open(path))
        return schema["properties"]["kind"]["const"], schema
    crd = next(doc for doc in yaml.safe_load_all(open(path)) if doc)
    version = next(v for v in crd["spec"]["versions"] if v.get("served") and v.get("storage"))
    schema = strict(version["schema"]["openAPIV3Schema"])
    # apiVersion, kind and metadata are the API server's, not the CRD's, to check.
    schema["properties"]["metadata"] = {"type": "object"}
    return crd["spec"]["names"]["kind"], schema


def crd(rendered, *schema_paths):
    import jsonschema  # installed with kubernetes-validate
    import yaml

    schemas = dict(load_schema(path) for path in schema_paths)
    found = {kind: 0 for kind in schemas}
    for doc in yaml.safe_load_all(open(rendered)):
        if doc and doc.get("kind") in schemas:
            jsonschema.validate(doc, schemas[doc["kind"]])
            found[doc["kind"]] += 1
    if not any(found.values()):
        sys.exit(f"{rendered}: no custom resource to check")
    print(f"{rendered}: " + ", ".join(f"{n} {kind} valid" for kind, n in found.items()))


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
