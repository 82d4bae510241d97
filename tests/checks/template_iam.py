"""What tests/checks/sam.sh adds for issue #13: the template against the code
and the docs, evaluated for two parameter sets (conditions resolved).

* each function's IAM actions equal its row of infra/README.md's table
  (tokens: `store`, `eks`, `model`, expanded per parameter set), with no
  statement on Resource "*", and the store's policies on exactly the roles of
  the functions whose row says `store`;
* EKS access entries exist only with EksClusterName: one for SandboxRole and
  one for each own-role function whose row says `eks`, all to the group
  infra/k8s/rbac.yaml binds; and the functions that reach the cluster are
  exactly those the code marks `[sandboxes]` (shared/src/api/mod.rs,
  shared/src/tasks/mod.rs);
* no `{{resolve:` in any function's environment (secrets are read at start);
* every `${…}` of every ASL file is substituted, and nothing else is;
* every API route is in the route table and in openapi.json, and back.

Usage: python3 tests/checks/template_iam.py infra/template.yaml
"""

import json
import re
import sys
from pathlib import Path

import yaml


class Loader(yaml.SafeLoader):
    """Reads CloudFormation short forms as their long forms ({"Ref": …}, {"Fn::If": …})."""


def _construct(loader, suffix, node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    if suffix == "Condition":
        return {"Condition": value}
    return {f"Fn::{suffix}": value}


Loader.add_multi_constructor("!", _construct)

path = Path(sys.argv[1] if len(sys.argv) > 1 else "infra/template.yaml")
t = yaml.load(path.read_text(), Loader=Loader)
errors = []

# Parameter sets: A, the default backends with a cluster and the stack's
# Cognito pool; B, PostgreSQL, Bedrock, no cluster, an outside issuer.
ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:apna/{}-AbCdEf"
DIGEST = "123456789012.dkr.ecr.us-east-1.amazonaws.com/apna-preview@sha256:" + "0" * 64
CONFIGS = {
    "A (dynamodb, anthropic, cluster, Cognito)": {
        "DatabaseBackend": "dynamodb",
        "ModelProvider": "anthropic",
        "AnthropicApiKeySecretArn": ARN.format("anthropic"),
        "EksClusterName": "apna",
        "SandboxImage": DIGEST,
        "PreviewSecretArn": ARN.format("preview"),
    },
    "B (postgres, bedrock, no cluster, own issuer)": {
        "DatabaseBackend": "postgres",
        "DatabaseSecretArn": ARN.format("db"),
        "DatabaseMigrationSecretArn": ARN.format("db-owner"),
        "ModelProvider": "bedrock",
        "JwtIssuer": "https://issuer.example.com/",
        "OidcClientId": "web",
        "JwtAudience": "web",
    },
}

NO_VALUE = {"Ref": "AWS::NoValue"}
# The table's tokens, per parameter set (infra/README.md explains them).
STORE_DYNAMODB = {
    "dynamodb:DescribeTable", "dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query",
    "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem",
    "s3:GetObject", "s3:PutObject", "s3:DeleteObject",
}
BASELINE = {  # every function may write its logs and traces
    "AWSLambdaBasicExecutionRole", "AWSXRayDaemonWriteAccess", "AWSLambdaVPCAccessExecutionRole",
}


def evaluator(params):
    values = {k: v.get("Default", "") for k, v in t["Parameters"].items()}
    values.update(params)

    def val(x):
        if isinstance(x, dict) and "Ref" in x:
            v = values.get(x["Ref"], "")
            return ",".join(v) if isinstance(v, list) else str(v)
        if isinstance(x, dict) and "Fn::Join" in x:
            sep, items = x["Fn::Join"]
            if isinstance(items, dict):
                return val(items).replace(",", sep)
            return sep.join(val(i) for i in items)
        return str(x)

    def cond(x):
        if isinstance(x, str):
            return cond(t["Conditions"][x])
        (k, v), = x.items()
        if k == "Fn::Equals":
            return val(v[0]) == val(v[1])
        if k == "Fn::Not":
            return not cond(v[0])
        if k == "Fn::And":
            return all(cond(i) for i in v)
        if k == "Fn::Or":
            return any(cond(i) for i in v)
        if k == "Condition":
            return cond(v)
        raise ValueError(f"condition {x}")

    def resolve(x):
        if isinstance(x, dict):
            if "Fn::If" in x:
                c, a, b = x["Fn::If"]
                return resolve(a if cond(c) else b)
            out = {k: resolve(v) for k, v in x.items()}
            return {k: v for k, v in out.items() if v != NO_VALUE}
        if isinstance(x, list):
            return [resolve(i) for i in x if resolve(i) != NO_VALUE]
        return x

    active = {k: resolve(v) for k, v in t["Resources"].items()
              if "Condition" not in v or cond(v["Condition"])}
    return values, cond, active


def statements(doc):
    for s in doc.get("Statement", []):
        yield s


def actions_of(stmts, who):
    out = set()
    for s in stmts:
        if s.get("Effect") != "Allow":
            continue
        acts = s.get("Action", [])
        acts = [acts] if isinstance(acts, str) else acts
        res = s.get("Resource", [])
        res = [res] if not isinstance(res, list) else res
        if any(r == "*" for r in res):
            errors.append(f"{who}: allows {acts} on Resource '*'")
        out.update(acts)
    return out


# infra/README.md's table: | function | role | IAM actions | why |
readme = Path("infra/README.md").read_text()
table = {}
for line in readme.splitlines():
    m = re.match(r"^\|\s*(\w+Function)\s*\|\s*(own|SandboxRole)\s*\|([^|]*)\|", line)
    if m:
        table[m.group(1)] = (m.group(2), [a.strip() for a in m.group(3).split(",") if a.strip()])
if not table:
    errors.append("infra/README.md has no IAM table (| function | role | IAM actions | why |)")

rbac = yaml.safe_load_all(Path("infra/k8s/rbac.yaml").read_text())
groups = [s["name"] for d in rbac if d and d.get("kind") == "RoleBinding"
          for s in d.get("subjects", []) if s.get("kind") == "Group"]

for label, params in CONFIGS.items():
    values, cond, active = evaluator(params)
    functions = {k: v for k, v in active.items() if v["Type"] == "AWS::Serverless::Function"}
    managed = {k: v for k, v in active.items() if v["Type"] == "AWS::IAM::ManagedPolicy"}
    attached = {}  # role name -> managed policies that name it in Roles
    for name, p in managed.items():
        for r in p["Properties"].get("Roles", []):
            attached.setdefault(r.get("Ref"), set()).add(name)

    def role_actions(role, who):
        acts = set()
        for name in attached.get(role, ()):
            acts |= actions_of(statements(managed[name]["Properties"]["PolicyDocument"]), f"{who} ({name})")
        return acts

    for f in sorted(set(table) - set(functions)):
        if not (f == "MigrateFunction" and values["DatabaseBackend"] != "postgres"):
            errors.append(f"{label}: {f} is in infra/README.md's table but not deployed")
    store_roles = set()
    for name, fn in sorted(functions.items()):
        props = fn["Properties"]
        if name not in table:
            errors.append(f"{label}: {name} has no row in infra/README.md's IAM table")
            continue
        role_kind, tokens = table[name]
        got = set()
        if "Role" in props:
            role = props["Role"].get("Fn::GetAtt", [None])[0]
            if role_kind != "SandboxRole" or role != "SandboxRole":
                errors.append(f"{label}: {name} runs as {role}; the table says {role_kind}")
                continue
            r = active["SandboxRole"]["Properties"]
            for arn in r.get("ManagedPolicyArns", []):
                if isinstance(arn, dict) and "Ref" in arn:
                    got |= actions_of(statements(managed[arn["Ref"]]["Properties"]["PolicyDocument"]), name)
                else:
                    base = json.dumps(arn).rsplit("/", 1)[-1].strip('"}')
                    if base not in BASELINE:
                        errors.append(f"{label}: SandboxRole has managed policy {arn}")
            for p in r.get("Policies", []):
                got |= actions_of(statements(p["PolicyDocument"]), name)
            got |= role_actions("SandboxRole", name)
            role_name = "SandboxRole"
        else:
            if role_kind != "own":
                errors.append(f"{label}: {name} has its own role; the table says {role_kind}")
            for p in props.get("Policies", []):
                if isinstance(p, dict) and "Ref" in p:
                    got |= actions_of(statements(managed[p["Ref"]]["Properties"]["PolicyDocument"]), name)
                elif isinstance(p, dict) and "Statement" in p:
                    got |= actions_of(statements(p), name)
                else:
                    errors.append(f"{label}: {name}: policy {p} is neither a managed policy of the template nor a statement list")
            role_name = f"{name}Role"
            got |= role_actions(role_name, name)
        want = set()
        for tok in tokens:
            if tok == "store":
                want |= STORE_DYNAMODB if values["DatabaseBackend"] == "dynamodb" else {"secretsmanager:GetSecretValue"}
                store_roles.add(role_name)
            elif tok == "preview":
                want |= {"secretsmanager:GetSecretValue"} if values["PreviewSecretArn"] else set()
            elif tok == "eks":
                want |= {"eks:DescribeCluster"} if values["EksClusterName"] else set()
            elif tok == "model":
                want |= ({"bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream"}
                         if values["ModelProvider"] == "bedrock" else {"secretsmanager:GetSecretValue"})
            else:
                want.add(tok)
        if got != want:
            errors.append(f"{label}: {name}: IAM actions differ from infra/README.md — "
                          f"extra {sorted(got - want)}, missing {sorted(want - got)}")

    # The store's policy is on exactly the roles of the functions that open it.
    store_policy = "StoreTablePolicy" if values["DatabaseBackend"] == "dynamodb" else "DatabaseSecretPolicy"
    roles = {r.get("Ref") for r in managed.get(store_policy, {}).get("Properties", {}).get("Roles", [])}
    if roles != store_roles:
        errors.append(f"{label}: {store_policy}.Roles — extra {sorted(roles - store_roles)}, missing {sorted(store_roles - roles)}")

    # The EKS access entries: only with a cluster, one for SandboxRole and one
    # for each own-role function whose row says `eks`, all to the group RBAC binds.
    entries = [v for v in active.values() if v["Type"] == "AWS::EKS::AccessEntry"]
    if values["EksClusterName"]:
        want_principals = {"SandboxRole"} | {
            f"{n}Role" for n in functions if n in table and table[n][0] == "own" and "eks" in table[n][1]}
        got_principals = set()
        for e in (x["Properties"] for x in entries):
            got_principals.add((e.get("PrincipalArn") or {}).get("Fn::GetAtt", [None])[0])
            if e.get("KubernetesGroups") != groups or not groups:
                errors.append(f"{label}: access entry groups {e.get('KubernetesGroups')} != infra/k8s/rbac.yaml's {groups}")
            if e.get("ClusterName") != {"Ref": "EksClusterName"}:
                errors.append(f"{label}: access entry on {e.get('ClusterName')}, not EksClusterName")
        if got_principals != want_principals or len(entries) != len(want_principals):
            errors.append(f"{label}: access entries map {sorted(map(str, got_principals))}, "
                          f"expected {sorted(want_principals)}")
    elif entries:
        errors.append(f"{label}: an AWS::EKS::AccessEntry exists without EksClusterName")

    # No secret values in any function's environment.
    envs = [("Globals", t["Globals"]["Function"].get("Environment", {}))]
    envs += [(n, f["Properties"].get("Environment", {})) for n, f in functions.items()]
    for who, env in envs:
        if "{{resolve:" in json.dumps(env):
            errors.append(f"{label}: {who}'s environment resolves a secret at deploy time ({{{{resolve:…}}}})")

# Functions reach sandboxes exactly where the code says so: a binary whose
# endpoint or task is marked `sandboxes` runs as SandboxRole or has `eks`.
binaries = {}
for name, r in t["Resources"].items():
    if r["Type"] == "AWS::Serverless::Function":
        b = (r.get("Metadata") or {}).get("BuildProperties", {}).get("Binary")
        if b:
            binaries[b] = name
uses = {}
api_src = Path("shared/src/api/mod.rs").read_text()
for m in re.finditer(r'^\s*\w+\s*=\s*"([a-z0-9-]+)"\s*\[([^\]]*)\]\s*\{', api_src, re.M):
    uses[m.group(1)] = {u.strip() for u in m.group(2).split(",") if u.strip()}
task_src = Path("shared/src/tasks/mod.rs").read_text()
for m in re.finditer(r'^\s*\w+\s*=\s*"(\w+)"\s*=>\s*[\w:]+\s*\[([^\]]*)\]\s*;', task_src, re.M):
    bin_name = "step-" + re.sub(r"(?<!^)(?=[A-Z])", "-", m.group(1)).lower()
    uses[bin_name] = {u.strip() for u in m.group(2).split(",") if u.strip()}
if len(uses) < 40:
    errors.append(f"read only {len(uses)} endpoints and tasks from the code's tables")
for b, fn in sorted(binaries.items()):
    if b not in uses:
        continue
    row = table.get(fn)
    if row is None:
        continue
    reaches = row[0] == "SandboxRole" or "eks" in row[1]
    if ("sandboxes" in uses[b]) != reaches:
        errors.append(f"{fn} ({b}): the code says sandboxes={'sandboxes' in uses[b]}, "
                      f"infra/README.md's row {'reaches' if reaches else 'does not reach'} the cluster")

# Every ${…} of every ASL file is substituted, and every substitution is used.
for name, m in t["Resources"].items():
    if m["Type"] != "AWS::Serverless::StateMachine":
        continue
    text = (path.parent / m["Properties"]["DefinitionUri"]).read_text()
    used = set(re.findall(r"\$\{([^}]+)\}", text))
    subs = set(m["Properties"].get("DefinitionSubstitutions", {}))
    if used - subs:
        errors.append(f"{name}: {sorted(used - subs)} not substituted")
    if subs - used:
        errors.append(f"{name}: substitutions {sorted(subs - used)} not used by its ASL file")
machines = {(path.parent / m["Properties"]["DefinitionUri"]).resolve()
            for m in t["Resources"].values() if m["Type"] == "AWS::Serverless::StateMachine"}
for f in Path("statemachines").glob("*.asl.json"):
    if f.resolve() not in machines:
        errors.append(f"{f} is not deployed")

# Routes: the route table, openapi.json and the deployed HttpApi events agree.
source = Path("shared/src/api/mod.rs").read_text()
rt = source[source.index("\nendpoints! {"):]
rt = rt[:rt.index("\n}\n")]
routes = {(m.upper(), re.sub(r"\{\*(\w+)\}", r"{\1}", p))
          for p, m in re.findall(r'"([^"]+)" => (get|post|put|patch|delete)\(', rt)}
if not routes:
    errors.append("found no routes in shared/src/api/mod.rs endpoints! { … }")
doc = json.loads(Path("openapi.json").read_text())
documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
routes_documented = routes - {("GET", "/api/openapi.json")}
for r in sorted(routes_documented - documented):
    errors.append(f"route {r} is not in openapi.json")
for r in sorted(documented - routes_documented):
    errors.append(f"openapi.json documents {r}, which the route table does not serve")
deployed = set()
for f in t["Resources"].values():
    if f["Type"] != "AWS::Serverless::Function":
        continue
    for ev in (f["Properties"].get("Events") or {}).values():
        if ev["Type"] == "HttpApi":
            p = ev["Properties"]
            deployed.add((p["Method"].upper(), re.sub(r"\{(\w+)\+\}", r"{\1}", p["Path"])))
for r in sorted(routes ^ deployed):
    errors.append(f"route {r} is {'deployed' if r in deployed else 'in the route table'} only")

if errors:
    print("\n".join(f"template: {e}" for e in errors), file=sys.stderr)
    sys.exit(1)
print(f"template: IAM of {len(table)} functions equals infra/README.md's table in {len(CONFIGS)} parameter sets; "
      f"access entries only with a cluster, for exactly the roles of the functions the code marks [sandboxes]; no secret in any environment; every ASL placeholder substituted; "
      f"{len(routes)} routes = route table = openapi.json (+ itself)")
