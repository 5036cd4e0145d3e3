"""Validates deploy/kubernetes/*.yaml (run by scripts/check-operations, in its venv).

  python manifests.py KUBERNETES_VERSION FILE...

Every document of every file is checked by what reads it:

- Kubernetes' own kinds (Deployment, Service, Secret, ...) against the Kubernetes
  JSON schemas of KUBERNETES_VERSION that kubernetes-validate carries, strictly: an
  unknown field is an error, as it is to `kubectl apply --validate=strict`.
- KEDA's kinds (keda.sh/v1alpha1: ScaledObject, TriggerAuthentication) against the
  models cloudcoil.models.keda generates from KEDA's CRDs (2.16.1): the document is
  read into the model and written back, and must come back unchanged, so a field the
  CRD does not have (which the API server would prune) or a value of the wrong type
  (which pydantic would coerce, e.g. "1" for an integer) is an error, as is a missing
  required field. Not checked: KEDA's admission webhook (e.g. min <= max replicas).
- A Kustomization is not an object of the cluster and has no schema there: its
  `resources` must exist, be among FILEs, and its `images` must name an image a
  container uses.

Exits 1 when anything fails, naming the file, the object and the field.
"""

import os
import sys

import yaml


def fail(errors, where, message):
    errors.append(f"{where}: {message}")
    print(f"check-operations: FAIL {where}: {message}", file=sys.stderr)


def differences(given, read, path=""):
    """Where the document and what the model read of it differ (dotted paths)."""
    if isinstance(given, dict) and isinstance(read, dict):
        out = []
        for key in given:
            sub = f"{path}.{key}" if path else str(key)
            if key not in read:
                out.append(f"{sub}: not in the CRD's schema (pruned by the API server)")
            else:
                out.extend(differences(given[key], read[key], sub))
        for key in read:
            if key not in given:
                out.append(f"{path}.{key}: added by the model")
        return out
    if isinstance(given, list) and isinstance(read, list) and len(given) == len(read):
        out = []
        for i, (g, r) in enumerate(zip(given, read)):
            out.extend(differences(g, r, f"{path}[{i}]"))
        return out
    if given != read or type(given) is not type(read):
        return [f"{path}: {given!r} is read as {read!r} (wrong type)"]
    return []


def check_keda(doc, where, errors):
    import pydantic
    import cloudcoil.models.keda.v1alpha1 as keda

    model = getattr(keda, doc["kind"], None)
    if model is None or doc["kind"].endswith("List"):
        fail(errors, where, f"KEDA has no kind {doc['kind']} in keda.sh/v1alpha1")
        return
    try:
        read = model.model_validate(doc).model_dump(
            by_alias=True, exclude_unset=True, mode="json"
        )
    except pydantic.ValidationError as e:
        for err in e.errors():
            field = ".".join(str(p) for p in err["loc"])
            fail(errors, where, f"{field}: {err['msg']}")
        return
    diffs = differences(doc, read)
    for d in diffs:
        fail(errors, where, d)
    if not diffs:
        print(f"check-operations: ok {where} (KEDA 2.16.1 CRD models)")


def check_kubernetes(doc, where, version, errors):
    import kubernetes_validate.utils as kv

    try:
        kv.validate(doc, version, strict=True)
    except kv.SchemaNotFoundError as e:
        fail(errors, where, e.message)
    except kv.ValidationError as e:
        field = ".".join(str(p) for p in e.path)
        fail(errors, where, f"{field}: {e.message}")
    else:
        print(f"check-operations: ok {where} (Kubernetes {version}, strict)")


def container_images(docs):
    for doc in docs:
        spec = (doc.get("spec") or {}).get("template", {}).get("spec", {})
        for c in spec.get("containers", []) + spec.get("initContainers", []):
            yield c.get("image", "").rsplit(":", 1)[0]


def check_kustomization(doc, path, where, files, docs, errors):
    before = len(errors)
    base = os.path.dirname(path)
    given = {os.path.realpath(f) for f in files}
    for res in doc.get("resources", []):
        full = os.path.join(base, res)
        if not os.path.exists(full):
            fail(errors, where, f"resources: {res} does not exist")
        elif os.path.realpath(full) not in given:
            fail(errors, where, f"resources: {res} is not among the files checked")
    images = set(container_images(docs))
    for image in doc.get("images", []):
        if image.get("name") not in images:
            fail(errors, where, f"images: {image.get('name')} is no container's image")
    if len(errors) > before:
        return
    print(
        f"check-operations: ok {where} (resources and images; a Kustomization has no "
        "Kubernetes schema)"
    )


def main():
    version, files = sys.argv[1], sys.argv[2:]
    errors = []
    loaded = []
    for path in files:
        with open(path) as f:
            try:
                loaded.append((path, [d for d in yaml.safe_load_all(f) if d is not None]))
            except yaml.YAMLError as e:
                fail(errors, path, f"not YAML: {e}")
    every_doc = [d for _, docs in loaded for d in docs]
    for path, docs in loaded:
        for doc in docs:
            kind, api = doc.get("kind", "?"), doc.get("apiVersion", "?")
            name = (doc.get("metadata") or {}).get("name", "?")
            where = f"{path} {kind}/{name}"
            if api.startswith("kustomize.config.k8s.io/"):
                check_kustomization(doc, path, f"{path} {kind}", files, every_doc, errors)
            elif api.startswith("keda.sh/"):
                check_keda(doc, where, errors)
            else:
                check_kubernetes(doc, where, version, errors)
    if errors:
        print(f"check-operations: {len(errors)} manifest error(s)", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
