"""The cluster definitions in clusters/ against real schemas, and against what curator needs.

- clusters/{aws,gcp,azure}.yaml: the JSON schema that the installed `ray` ships for the
  cluster launcher (ray/autoscaler/ray-schema.json), then Ray's own config preparation and
  validation (defaults filled in, head type, worker bounds) — offline, no cloud calls.
- clusters/kuberay/{raycluster,rayjob}.yaml: the openAPIV3Schema of KubeRay's published
  CRDs (vendored in tests/data/kuberay), with unknown fields rejected as kubectl does, and
  the KubeRay operator's own semantic checks.
- Both: the worker groups curator needs (CPU, NVENC with `nvenc`, large GPU), the images
  built from deploy/, the model directory, and no credentials.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import re
import shlex
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from curator.config import NVENC_RESOURCE

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
CLUSTERS = ROOT / "clusters"
KUBERAY_CRDS = ROOT / "tests" / "data" / "kuberay"


def ray_cluster_schema() -> dict[str, Any]:
    """The JSON schema that the installed `ray` ships for cluster launcher configs."""
    import ray.autoscaler

    with open(os.path.join(os.path.dirname(ray.autoscaler.__file__), "ray-schema.json")) as f:
        return json.load(f)


def strict(schema: Any) -> Any:
    """An OpenAPI v3 structural schema as kubectl's strict field validation applies it:
    unknown fields are errors, except where the schema keeps them
    (`x-kubernetes-preserve-unknown-fields`) or is a map (`additionalProperties`)."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v) for k, v in schema.items()}
    if ("properties" in out and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


@functools.lru_cache(maxsize=None)
def crd(kind: str) -> dict[str, Any]:
    """A vendored KubeRay CRD (tests/data/kuberay) by kind: RayCluster or RayJob."""
    path = KUBERAY_CRDS / f"ray.io_{kind.lower()}s.yaml"
    with open(path) as f:  # ~1 MB each: libyaml's loader when there is one
        return yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def crd_schema(kind: str, version: str) -> dict[str, Any]:
    doc = crd(kind)
    assert doc["spec"]["names"]["kind"] == kind
    for v in doc["spec"]["versions"]:
        if v["name"] == version:
            assert v["served"], f"{kind} {version} is not served by this KubeRay"
            schema = copy.deepcopy(v["schema"]["openAPIV3Schema"])
            # metadata is validated by the API server, not by the CRD schema
            schema["properties"]["metadata"] = {"type": "object"}
            return strict(schema)
    raise AssertionError(f"KubeRay CRD {kind} has no version {version}")


def load_yaml(path: Path) -> Any:
    with open(path) as f:
        return yaml.safe_load(f)


@pytest.fixture(scope="session")
def ray_schema() -> dict[str, Any]:
    return ray_cluster_schema()


LAUNCHER = ["aws", "gcp", "azure"]
#: machine types with NVENC (L4, L40S, A10G, A10, T4) per cloud; H100/A100 have none
NVENC_MACHINES = {
    "aws": re.compile(r"^(g6|g6e|g5|g4dn)\."),
    "gcp": re.compile(r"^g2-standard-"),
    "azure": re.compile(r"^Standard_(NV\d+ads_A10_v5|NC\d+as_T4_v3)$"),
}
def launcher(name: str) -> dict:
    return load_yaml(CLUSTERS / f"{name}.yaml")


def machine_type(cloud: str, node_config: dict) -> str:
    if cloud == "aws":
        return node_config["InstanceType"]
    if cloud == "gcp":
        return node_config["machineType"]
    return node_config["azure_arm_parameters"]["vmSize"]


def image_tag(image: str) -> str:
    """`registry/curator:0.1.0-cuda` -> `cuda`."""
    m = re.fullmatch(r"[\w.\-/]+/curator:[\w.]+-(\w+)", image)
    assert m, f"image {image!r} is not one of the curator images built from deploy/"
    return m.group(1)


# ------------------------------------------------------------------- Ray launcher
@pytest.mark.parametrize("cloud", LAUNCHER)
def test_launcher_config_meets_rays_schema(cloud, ray_schema):
    config = launcher(cloud)
    errors = sorted(jsonschema.Draft7Validator(ray_schema).iter_errors(config), key=str)
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)
    assert config["provider"]["type"] == cloud


@pytest.mark.parametrize("cloud", LAUNCHER)
def test_launcher_config_passes_rays_own_preparation(cloud):
    """What `ray up` does before it calls the cloud: fill in the provider's defaults,
    check head type and worker bounds, validate again."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(launcher(cloud))
    validate_config(prepared)
    assert prepared["head_node_type"] == "head"


def test_schema_check_is_not_vacuous(ray_schema):
    """The same validation rejects a typo and a non-integer custom resource."""
    bad = launcher("aws")
    bad["available_node_types"]["nvenc"]["min_worker"] = 1
    assert list(jsonschema.Draft7Validator(ray_schema).iter_errors(bad))
    bad = launcher("aws")
    bad["available_node_types"]["nvenc"]["resources"] = {NVENC_RESOURCE: "one"}
    assert list(jsonschema.Draft7Validator(ray_schema).iter_errors(bad))


@pytest.mark.parametrize("cloud", LAUNCHER)
def test_launcher_worker_groups_place_curators_stages(cloud):
    config = launcher(cloud)
    types = config["available_node_types"]
    assert set(types) == {"head", "cpu", "nvenc", "gpu-large"}
    # the head only drives: no stage work is scheduled there
    assert types["head"]["resources"].get("CPU") == 0
    # exactly the NVENC group advertises `nvenc`, on a machine type that has NVENC
    with_nvenc = {name for name, t in types.items() if t["resources"].get(NVENC_RESOURCE)}
    assert with_nvenc == {"nvenc"}
    assert NVENC_MACHINES[cloud].match(machine_type(cloud, types["nvenc"]["node_config"]))
    assert not NVENC_MACHINES[cloud].match(machine_type(cloud, types["gpu-large"]["node_config"]))
    # autoscaling bounds
    for name, t in types.items():
        if name != "head":
            assert 0 <= t["min_workers"] <= t["max_workers"], name
    assert sum(t.get("min_workers", 0) for t in types.values()) <= config["max_workers"]
    assert types["cpu"]["min_workers"] >= 1  # something can always run CPU stages
    assert types["nvenc"]["max_workers"] >= 1 and types["gpu-large"]["max_workers"] >= 1


@pytest.mark.parametrize("cloud", LAUNCHER)
def test_nvdec_only_gpus_decode_but_never_advertise_nvenc(cloud):
    """H100 nodes have NVDEC and no NVENC: `encoder=nvdec` places there by GPU, so their
    containers get the driver's video libraries; `nvenc` is never advertised there."""
    large = launcher(cloud)["available_node_types"]["gpu-large"]
    assert NVENC_RESOURCE not in large["resources"]
    opts = " ".join(large["docker"].get("worker_run_options", []))
    assert "NVIDIA_DRIVER_CAPABILITIES=compute,utility,video" in opts


@pytest.mark.parametrize("cloud", LAUNCHER)
def test_launcher_images_models_and_ray_start(cloud):
    config = launcher(cloud)
    docker = config["docker"]
    assert image_tag(docker["image"]) == "cpu"
    types = config["available_node_types"]
    assert image_tag(types["nvenc"]["docker"]["worker_image"]) == "cuda"
    assert image_tag(types["gpu-large"]["docker"]["worker_image"]) == "vllm"
    # NVENC inside a container needs the driver's video capability
    assert "-e NVIDIA_DRIVER_CAPABILITIES=compute,utility,video" in types["nvenc"]["docker"]["worker_run_options"]
    # the model directory: fetched onto the host, mounted read-only, named to curator
    assert "-e CURATOR_MODEL_DIR=/models" in docker["run_options"]
    assert "-v /mnt/curator-models:/models:ro" in docker["run_options"]
    assert any("/mnt/curator-models" in c for c in config["initialization_commands"][1:])
    head = " ".join(config["head_start_ray_commands"])
    assert "--head" in head and "--dashboard-host=0.0.0.0" in head and "--autoscaling-config" in head
    assert all("--disable-usage-stats" in c for c in config["head_start_ray_commands"] + config["worker_start_ray_commands"]
               if "ray start" in c)


def test_launcher_credentials_come_from_the_cloud_identity():
    aws = launcher("aws")["available_node_types"]
    for name, t in aws.items():
        assert t["node_config"]["IamInstanceProfile"]["Arn"].startswith("arn:aws:iam::"), name
        # containers reach the instance role through IMDSv2 only with a hop limit of 2
        assert t["node_config"]["MetadataOptions"] == {"HttpTokens": "required", "HttpPutResponseHopLimit": 2}
    gcp = launcher("gcp")["available_node_types"]
    for name in ("cpu", "nvenc", "gpu-large"):
        assert gcp[name]["node_config"]["serviceAccounts"][0]["email"].endswith(".iam.gserviceaccount.com")
    azure = launcher("azure")
    assert azure["provider"]["msi_name"] and azure["provider"]["msi_resource_group"]


SECRETS = [
    re.compile(r"AKIA[0-9A-Z]{16}"),  # AWS access key id
    re.compile(r"(?i)aws_secret_access_key|secret_access_key\s*[:=]"),
    re.compile(r"(?i)AccountKey=|SharedAccessSignature=|sig=[A-Za-z0-9%]{20,}"),
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    re.compile(r'"private_key"\s*:'),  # a GCP service-account key file
    re.compile(r"(?i)(password|token)\s*[:=]\s*\S{8,}"),
]


@pytest.mark.parametrize("path", sorted(p.relative_to(CLUSTERS).as_posix() for p in CLUSTERS.rglob("*.yaml")))
def test_no_credentials_in_cluster_definitions(path):
    text = (CLUSTERS / path).read_text()
    for pattern in SECRETS:
        assert not pattern.search(text), f"{path} looks like it holds a credential ({pattern.pattern})"


# ------------------------------------------------------------------------ KubeRay
def kuberay(name: str) -> dict:
    return load_yaml(CLUSTERS / "kuberay" / name)


def cluster_spec(doc: dict) -> dict:
    return doc["spec"] if doc["kind"] == "RayCluster" else doc["spec"]["rayClusterSpec"]


def validate_crd(doc: dict) -> list[str]:
    group, version = doc["apiVersion"].split("/")
    assert group == "ray.io"
    schema = crd_schema(doc["kind"], version)
    return [f"{list(e.path)}: {e.message}" for e in jsonschema.Draft7Validator(schema).iter_errors(doc)]


def kuberay_semantic_errors(spec: dict) -> list[str]:
    """The checks of KubeRay's ValidateRayClusterSpec (ray-operator/controllers/ray/utils/
    validation.go, v1.7.0) that apply to a spec before it is applied."""
    errors = []
    groups = [("Head", spec["headGroupSpec"])] + [(g["groupName"], g) for g in spec["workerGroupSpecs"]]
    for name, g in groups:
        if not g["template"]["spec"].get("containers"):
            errors.append(f"{name}: no containers")
        params = g.get("rayStartParams", {})
        if any(params.get(k) for k in ("num-cpus", "num-gpus", "memory", "resources")) and g.get("resources"):
            errors.append(f"{name}: resources in both rayStartParams and resources")
        if "labels" in params:
            errors.append(f"{name}: rayStartParams['labels'] is not supported")
        if "resources" in params:
            try:
                parsed = json.loads(params["resources"].strip("'\"` "))
                if not all(isinstance(v, (int, float)) for v in parsed.values()):
                    errors.append(f"{name}: non-numeric resources")
            except ValueError:
                errors.append(f"{name}: rayStartParams resources is not JSON")
    names = [g["groupName"] for g in spec["workerGroupSpecs"]]
    if len(set(names)) != len(names):
        errors.append("duplicate worker group names")
    for g in spec["workerGroupSpecs"]:
        lo, hi = g.get("minReplicas"), g.get("maxReplicas")
        if not spec.get("enableInTreeAutoscaling") and (lo is None or hi is None):
            errors.append(f"{g['groupName']}: min/maxReplicas required without autoscaling")
        if lo is not None and hi is not None and lo > hi:
            errors.append(f"{g['groupName']}: minReplicas > maxReplicas")
    return errors


@pytest.mark.parametrize("name", ["raycluster.yaml", "rayjob.yaml"])
def test_kuberay_manifest_meets_the_published_crd(name):
    doc = kuberay(name)
    assert doc["kind"] == {"raycluster.yaml": "RayCluster", "rayjob.yaml": "RayJob"}[name]
    errors = validate_crd(doc)
    assert not errors, "\n".join(errors)
    assert not kuberay_semantic_errors(cluster_spec(doc))


def test_crd_check_is_not_vacuous():
    doc = kuberay("raycluster.yaml")
    bad = copy.deepcopy(doc)
    bad["spec"]["workerGroupSpecs"][0]["minReplica"] = 1  # typo: unknown field
    assert any("minReplica" in e for e in validate_crd(bad))
    bad = copy.deepcopy(doc)
    bad["spec"]["workerGroupSpecs"][1]["maxReplicas"] = "many"  # wrong type
    assert validate_crd(bad)
    bad = copy.deepcopy(doc)
    bad["spec"]["workerGroupSpecs"][1]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"] = "48 GB"
    assert validate_crd(bad)  # not a Kubernetes quantity
    bad = copy.deepcopy(doc)
    bad["spec"]["workerGroupSpecs"][1]["resources"] = {NVENC_RESOURCE: "1"}  # and in rayStartParams
    assert kuberay_semantic_errors(bad["spec"])


def test_kuberay_nvdec_only_group_has_video_capability():
    spec = kuberay("raycluster.yaml")["spec"]
    large = next(g for g in spec["workerGroupSpecs"] if g["groupName"] == "gpu-large")
    container = large["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["NVIDIA_DRIVER_CAPABILITIES"] == "compute,utility,video"
    assert container["resources"]["limits"]["nvidia.com/gpu"]


def test_rayjob_runs_the_same_cluster_as_raycluster():
    assert kuberay("rayjob.yaml")["spec"]["rayClusterSpec"] == kuberay("raycluster.yaml")["spec"]


def test_kuberay_groups_place_curators_stages():
    spec = kuberay("raycluster.yaml")["spec"]
    groups = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
    assert set(groups) == {"cpu", "nvenc", "gpu-large"}
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    for name, g in groups.items():
        res = json.loads(g["rayStartParams"].get("resources", "{}").strip("'"))
        assert (NVENC_RESOURCE in res) == (name == "nvenc"), name
        assert 0 <= g["minReplicas"] <= g["maxReplicas"]
        pod = g["template"]["spec"]
        container = pod["containers"][0]
        gpus = container["resources"]["limits"].get("nvidia.com/gpu")
        if name == "cpu":
            assert gpus is None and "nodeSelector" not in pod
            assert image_tag(container["image"]) == "cpu"
            continue
        assert int(gpus) >= 1
        assert pod["nodeSelector"]["nvidia.com/gpu.product"]
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    nvenc_pod = groups["nvenc"]["template"]["spec"]
    assert nvenc_pod["nodeSelector"]["nvidia.com/gpu.product"] in {"NVIDIA-L4", "NVIDIA-L40S", "NVIDIA-A10G"}
    assert {"name": "NVIDIA_DRIVER_CAPABILITIES", "value": "compute,utility,video"} in nvenc_pod["containers"][0]["env"]
    assert image_tag(nvenc_pod["containers"][0]["image"]) == "cuda"
    assert image_tag(groups["gpu-large"]["template"]["spec"]["containers"][0]["image"]) == "vllm"


def test_kuberay_models_volume_and_identity():
    spec = kuberay("raycluster.yaml")["spec"]
    pvc = kuberay("models-pvc.yaml")
    sa = kuberay("serviceaccount.yaml")
    assert pvc["kind"] == "PersistentVolumeClaim" and sa["kind"] == "ServiceAccount"
    pods = [spec["headGroupSpec"]["template"]] + [g["template"] for g in spec["workerGroupSpecs"]]
    for pod in pods:
        ps = pod["spec"]
        assert ps["serviceAccountName"] == sa["metadata"]["name"]
        vols = {v["name"]: v for v in ps["volumes"]}
        assert vols["models"]["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
        c = ps["containers"][0]
        assert {"name": "models", "mountPath": "/models", "readOnly": True} in c["volumeMounts"]
        assert {"name": "CURATOR_MODEL_DIR", "value": "/models"} in c["env"]
        assert not any("valueFrom" in e for e in c["env"])  # no secrets wired in
    annotations = sa["metadata"]["annotations"]
    assert {"eks.amazonaws.com/role-arn", "iam.gke.io/gcp-service-account",
            "azure.workload.identity/client-id"} <= set(annotations)


def test_versions_match_the_project():
    """KubeRay's rayVersion and the project's ray pin must agree (Ray refuses mixed versions)."""
    import tomllib

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    ray_pin = next(d for d in deps if d.startswith("ray[")).split("==")[1]
    assert kuberay("raycluster.yaml")["spec"]["rayVersion"] == ray_pin


def test_rayjob_entrypoint_is_a_valid_curator_run():
    """The RayJob's entrypoint is `python -m curator run ...` and parses and resolves as one."""
    from curator.cli import build_parser
    from curator.config import PipelineConfig

    argv = shlex.split(kuberay("rayjob.yaml")["spec"]["entrypoint"])
    assert argv[:3] == ["python", "-m", "curator"]
    args = build_parser().parse_args(argv[3:])
    assert args.command == "run" and args.address == "auto"
    cfg = PipelineConfig.load(args.config, args.overrides, input=args.input, output=args.output)
    assert cfg.stages.transcode.resources.custom[NVENC_RESOURCE] == 1
