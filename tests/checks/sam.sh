#!/usr/bin/env bash
# The SAM template must pass cfn-lint (also its informational checks, with
# each DatabaseBackend) and `sam validate --lint` (offline, with dummy
# credentials), and must deploy what the code defines: one function per
# Lambda binary in functions/Cargo.toml, every route of the API's route table
# on the function that serves it (auth on all but the public four) and in
# openapi.json, a substitution for every ${…} in the state machines, each
# Lambda ending before its Task state's TimeoutSeconds, for
# DatabaseBackend=dynamodb the table of infra/dynamodb-table.json; each
# function's IAM actions as infra/README.md's table says, the EKS access entry
# only with a cluster, no secret in any environment (tests/checks/template_iam.py);
# and `sam build` configured to build with the lambda-release profile's settings.
set -euo pipefail
cd "$(dirname "$0")/../.."
template=infra/template.yaml

# sam validate needs a region and credentials to start, though --lint makes
# no AWS call; telemetry off so nothing tries the network.
export AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-testing}
export AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-testing}
export AWS_DEFAULT_REGION=${AWS_DEFAULT_REGION:-us-east-1}
export SAM_CLI_TELEMETRY=0

cfn-lint "$template"
cfn-lint --include-checks I -- "$template"
# Both database backends, with the parameters a deploy of each must give (the
# second also with a cluster, Bedrock and an outside OIDC issuer).
secret=arn:aws:secretsmanager:us-east-1:123456789012:secret:apna
image=123456789012.dkr.ecr.us-east-1.amazonaws.com/apna-preview@sha256:$(printf '0%.0s' $(seq 64))
for params in \
  "DatabaseBackend=dynamodb AnthropicApiKeySecretArn=$secret/anthropic-AbCdEf" \
  "DatabaseBackend=postgres DatabaseSecretArn=$secret/db-AbCdEf ModelProvider=bedrock EksClusterName=apna SandboxImage=$image PreviewSecretArn=$secret/preview-AbCdEf JwtIssuer=https://issuer.example.com/ OidcClientId=web JwtAudience=web"; do
  # shellcheck disable=SC2086
  cfn-lint --include-checks I --parameters $params -- "$template"
done
echo "cfn-lint: $template ok (also informational checks; DatabaseBackend dynamodb and postgres)"
cfn-lint infra/site-domain.yaml
echo "cfn-lint: infra/site-domain.yaml ok"

log=$(mktemp)
trap 'rm -f "$log"' EXIT
# sam logs the whole transformed template at INFO on stderr: show it only on failure.
if ! sam validate --lint --template "$template" --region us-east-1 >"$log" 2>&1; then
  cat "$log"
  exit 1
fi
grep -F 'is a valid SAM Template' "$log"

python3 - "$template" <<'PY'
import json, re, sys, tomllib
from pathlib import Path

import yaml


class Loader(yaml.SafeLoader):
    """Reads CloudFormation short-form tags (!Ref, !Sub, …) as plain values."""


Loader.add_multi_constructor("!", lambda loader, suffix, node: (
    loader.construct_scalar(node) if isinstance(node, yaml.ScalarNode)
    else loader.construct_sequence(node) if isinstance(node, yaml.SequenceNode)
    else loader.construct_mapping(node)))

template_path = Path(sys.argv[1])
t = yaml.load(template_path.read_text(), Loader=Loader)
resources = t["Resources"]
functions = {k: v for k, v in resources.items() if v["Type"] == "AWS::Serverless::Function"}
global_timeout = t["Globals"]["Function"]["Timeout"]
errors = []

# 1. One function per Lambda binary, and no function without a binary.
cargo = tomllib.loads(Path("functions/Cargo.toml").read_text())
bins = {b["name"] for b in cargo.get("bin", []) if "lambda" in b.get("required-features", [])}
binary_of = {}
for name, f in functions.items():
    meta = f.get("Metadata", {})
    if meta.get("BuildMethod") != "rust-cargolambda":
        errors.append(f"{name}: BuildMethod is not rust-cargolambda")
    binary_of[name] = meta.get("BuildProperties", {}).get("Binary")
deployed = list(binary_of.values())
for b in sorted(bins - set(deployed)):
    errors.append(f"binary {b} (functions/Cargo.toml) has no function in the template")
for b in sorted(set(deployed) - bins):
    errors.append(f"template builds {b}, which functions/Cargo.toml does not define with the lambda feature")
for b in sorted({b for b in deployed if deployed.count(b) > 1}):
    errors.append(f"binary {b} is deployed by more than one function")
# The Lambda build (cargo-lambda reads these) has the lambda feature and none
# of the local binary's defaults it does not use: no headless browser.
lambda_build = cargo.get("package", {}).get("metadata", {}).get("lambda", {}).get("build", {})
if "lambda" not in lambda_build.get("features", []):
    errors.append("functions/Cargo.toml [package.metadata.lambda.build]: features lack lambda")
if lambda_build.get("no_default_features") is not True or "browser" in lambda_build.get("features", []):
    errors.append("functions/Cargo.toml [package.metadata.lambda.build]: the Lambdas build with the browser feature")

# 2. Every route in the route table, on its function; nothing else.
source = Path("shared/src/api/mod.rs").read_text()
table = source[source.index("\nendpoints! {"):]
table = table[:table.index("\n}\n")]
want = set()
for binary, rows in re.findall(r'[A-Z_]+ = "(api-[a-z0-9-]+)" \[[a-z, ]*\] \{(.*?)\n    \}', table, re.S):
    for path, method in re.findall(r'"([^"]+)" => (get|post|put|patch|delete)\(', rows):
        # axum's catch-all {*path} is API Gateway's greedy {path+}.
        want.add((binary, method.upper(), re.sub(r"\{\*(\w+)\}", r"{\1+}", path)))
if not want:
    errors.append("found no routes in shared/src/api/mod.rs endpoints! { … }")
public = {("GET", "/healthz"), ("GET", "/api/config"), ("GET", "/api/openapi.json"),
          ("GET", "/api/templates"), ("GET", "/api/templates/{name}/preview.png"),
          ("POST", "/preview-wake/{id}")}
have = set()
for name, f in functions.items():
    for ev_name, ev in (f["Properties"].get("Events") or {}).items():
        if ev["Type"] != "HttpApi":
            continue
        p = ev["Properties"]
        route = (p["Method"].upper(), p["Path"])
        have.add((binary_of[name], *route))
        if p.get("ApiId") != "HttpApi":
            errors.append(f"{name}.{ev_name}: not on the HttpApi")
        is_public = p.get("Auth", {}).get("Authorizer") == "NONE"
        if is_public != (route in public):
            errors.append(f"{name} {route}: {'public' if is_public else 'behind the JWT authorizer'}, should not be")
for r in sorted(want - have):
    errors.append(f"route {r} (route table) is not deployed")
for r in sorted(have - want):
    errors.append(f"route {r} is deployed but not in the route table")
auth = resources["HttpApi"]["Properties"]["Auth"]
if auth.get("DefaultAuthorizer") not in auth.get("Authorizers", {}):
    errors.append("HttpApi has no default JWT authorizer")

# 3. State machines: every placeholder substituted by its step function, whose
#    timeout ends before the Task state's.
def tasks(states):
    for s in states.values():
        if s.get("Type") == "Task":
            yield s
        for branch in s.get("Branches", []):
            yield from tasks(branch["States"])
        for key in ("ItemProcessor", "Iterator"):
            if key in s:
                yield from tasks(s[key]["States"])

machines = {k: v for k, v in resources.items() if v["Type"] == "AWS::Serverless::StateMachine"}
seen_files = set()
for name, m in machines.items():
    props = m["Properties"]
    asl_path = (template_path.parent / props["DefinitionUri"]).resolve()
    seen_files.add(asl_path)
    asl = json.loads(asl_path.read_text())
    subs = props.get("DefinitionSubstitutions", {})
    invoked = {p["LambdaInvokePolicy"]["FunctionName"] for p in props.get("Policies", [])
               if isinstance(p, dict) and "LambdaInvokePolicy" in p}
    placeholders = set()
    for task in tasks(asl["States"]):
        m_ = re.fullmatch(r"\$\{(\w+)FunctionArn\}", task["Resource"])
        if not m_:
            errors.append(f"{asl_path.name}: Task resource {task['Resource']} is not a ${{XFunctionArn}} placeholder")
            continue
        key = m_.group(1) + "FunctionArn"
        placeholders.add(key)
        fn = m_.group(1) + "Function"
        got = subs.get(key)
        if isinstance(got, str):  # short form !GetAtt X.Arn
            got = got.split(".", 1)
        if got != [fn, "Arn"]:
            errors.append(f"{name}: {key} should be !GetAtt {fn}.Arn, is {subs.get(key)}")
            continue
        if fn not in invoked:
            errors.append(f"{name}: no LambdaInvokePolicy for {fn}")
        kebab = re.sub(r"(?<!^)([A-Z])", r"-\1", m_.group(1)).lower()
        if binary_of.get(fn) != f"step-{kebab}":
            errors.append(f"{fn}: builds {binary_of.get(fn)}, expected step-{kebab}")
        timeout = functions[fn]["Properties"].get("Timeout", global_timeout)
        if "TimeoutSeconds" in task and timeout >= task["TimeoutSeconds"]:
            errors.append(f"{fn}: Timeout {timeout} s must end before the state's TimeoutSeconds {task['TimeoutSeconds']}")
    for extra in sorted(set(subs) - placeholders):
        errors.append(f"{name}: substitution {extra} is not used by {asl_path.name}")
for f in sorted(Path("statemachines").glob("*.asl.json")):
    if f.resolve() not in seen_files:
        errors.append(f"{f} is not deployed")

# 4. The database: a DynamoDB table matching infra/dynamodb-table.json, only
#    with DatabaseBackend=dynamodb (the default), open to every function's role
#    and scoped to the table and its indexes; otherwise the PostgreSQL URL.
spec = json.loads(Path("infra/dynamodb-table.json").read_text())
backend = t["Parameters"]["DatabaseBackend"]
if backend.get("Default") != "dynamodb" or sorted(backend.get("AllowedValues", [])) != ["dynamodb", "postgres"]:
    errors.append("DatabaseBackend: default dynamodb, allowed dynamodb | postgres")
conditions = t["Conditions"]
if conditions.get("UseDynamoDb") != ["DatabaseBackend", "dynamodb"]:
    errors.append("condition UseDynamoDb must be DatabaseBackend == dynamodb")
gated = sorted(k for k, v in resources.items() if v.get("Condition") == "UseDynamoDb")
if gated != ["StoreTable", "StoreTablePolicy"]:
    errors.append(f"resources only for DynamoDB should be StoreTable, StoreTablePolicy: {gated}")
table = resources.get("StoreTable", {}).get("Properties", {})
want_table = {
    "BillingMode": "PAY_PER_REQUEST",
    "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
    "SSESpecification": {"SSEEnabled": True},
    "TimeToLiveSpecification": {"AttributeName": spec["TimeToLiveAttribute"], "Enabled": True},
    "KeySchema": spec["KeySchema"],
}
for k, v in want_table.items():
    if table.get(k) != v:
        errors.append(f"StoreTable.{k} is {table.get(k)}, should be {v}")
attrs = lambda l: sorted((a["AttributeName"], a["AttributeType"]) for a in l)
if attrs(table.get("AttributeDefinitions", [])) != attrs(spec["AttributeDefinitions"]):
    errors.append("StoreTable.AttributeDefinitions differ from infra/dynamodb-table.json")
index = lambda l: sorted(json.dumps(i, sort_keys=True) for i in l)
if index(table.get("GlobalSecondaryIndexes", [])) != index(spec["GlobalSecondaryIndexes"]):
    errors.append("StoreTable.GlobalSecondaryIndexes differ from infra/dynamodb-table.json")
# (Which roles may use the table: tests/checks/template_iam.py, from infra/README.md.)
policy = resources.get("StoreTablePolicy", {}).get("Properties", {})
for statement in policy.get("PolicyDocument", {}).get("Statement", []):
    actions = statement.get("Action", [])
    if all(a.startswith("dynamodb:") for a in actions):
        if sorted(statement.get("Resource", [])) != sorted(["StoreTable.Arn", "${StoreTable.Arn}/index/*"]):
            errors.append(f"StoreTablePolicy reaches beyond the table and its indexes: {statement.get('Resource')}")
        if any(a.endswith("*") or a in ("dynamodb:Scan", "dynamodb:DeleteTable") for a in actions):
            errors.append(f"StoreTablePolicy actions: {actions}")
    elif statement.get("Resource") != "${SnapshotBucket.Arn}/dynamodb/*" or \
            sorted(actions) != ["s3:DeleteObject", "s3:GetObject", "s3:PutObject"]:
        errors.append(f"StoreTablePolicy: {actions} on {statement.get('Resource')} (only the store's objects, dynamodb/*)")

def resolve(value, env):
    """Evaluates !If (read as [condition, then, else]) for one parameter set."""
    while isinstance(value, list) and len(value) == 3 and value[0] in env:
        value = value[1] if env[value[0]] else value[2]
    return value

variables = t["Globals"]["Function"]["Environment"]["Variables"]
url = variables["DATABASE_URL"]
rule = t["Rules"]["DatabaseIsConfigured"]
for chosen in ("dynamodb", "postgres"):
    env = {"UseDynamoDb": chosen == "dynamodb"}
    got = resolve(url, env)
    # PostgreSQL: the URL without credentials; they come from DATABASE_SECRET_ARN at start.
    want = "dynamodb://${StoreTable}" if chosen == "dynamodb" else "DatabaseUrl"
    if got != want:
        errors.append(f"DatabaseBackend={chosen}: DATABASE_URL is {got}, should be {want}")
if variables.get("DATABASE_SECRET_ARN") != "DatabaseSecretArn":
    errors.append("DATABASE_SECRET_ARN should be the DatabaseSecretArn parameter")
if variables.get("APNA_DB_MIGRATIONS") != "check":
    errors.append("the functions should only check the schema (APNA_DB_MIGRATIONS=check); the migrate step applies it")
if rule.get("RuleCondition") != ["DatabaseBackend", "postgres"]:
    errors.append("rule DatabaseIsConfigured should apply only with DatabaseBackend=postgres")
# The #15 guards behind API Gateway: the web UI (CloudFront) is another
# origin than the API, so the cross-site guard must list it in both parameter
# sets; the Host allowlist stays off (the gateway routes only its own names).
for has_cors in (True, False):
    origins = str(resolve(variables.get("APNA_CORS_ORIGINS"), {"HasCorsOrigins": has_cors}))
    if "https://${WebDistribution.DomainName}" not in origins:
        errors.append(f"APNA_CORS_ORIGINS (HasCorsOrigins={has_cors}) should name the web UI's origin: {origins}")
if "APNA_PUBLIC_HOSTS" in variables:
    errors.append("APNA_PUBLIC_HOSTS would make the functions refuse API Gateway's own host names")

# 5. The CloudFront Function inlined in the templates is infra/site-router.js
#    (which tests/e2e/site_router.test.mjs runs with node).
router = Path("infra/site-router.js").read_text()
for path, name in [(template_path, "SitesRouterFunction"), (Path("infra/site-domain.yaml"), "RouterFunction")]:
    doc = yaml.load(path.read_text(), Loader=Loader)
    code = doc["Resources"][name]["Properties"]["FunctionCode"]
    code = code[0] if isinstance(code, list) else code
    if code.strip() != router.strip():
        errors.append(f"{path} {name}: FunctionCode differs from infra/site-router.js")

if errors:
    print("\n".join(f"template: {e}" for e in errors), file=sys.stderr)
    sys.exit(1)
print(f"template: {len(functions)} functions, {len(have)} routes, {len(machines)} state machines match the code; "
      f"the DynamoDB table matches infra/dynamodb-table.json")
PY

python3 tests/checks/template_iam.py "$template"

# `sam build` runs `cargo lambda build --release`: functions/Cargo.toml's
# cargo-lambda config must give the release profile the lambda profile's
# settings, and samconfig.toml must allow the beta build method.
python3 - <<'PY'
import sys, tomllib
from pathlib import Path

errors = []
profile = tomllib.loads(Path("Cargo.toml").read_text())["profile"]["lambda-release"]
meta = tomllib.loads(Path("functions/Cargo.toml").read_text())["package"]["metadata"]["lambda"]["build"]
config = {}
for item in meta.get("config", []):
    key, value = item.split("=", 1)
    if not key.startswith("profile.release."):
        errors.append(f"functions/Cargo.toml: cargo-lambda config {item!r} is not a release profile setting")
        continue
    config[key.removeprefix("profile.release.")] = tomllib.loads(f"v = {value}")["v"]
want = {k: v for k, v in profile.items() if k != "inherits"}
if config != want:
    errors.append(f"functions/Cargo.toml's cargo-lambda config {config} != [profile.lambda-release] {want}")
if "lambda" not in meta.get("features", []):
    errors.append("functions/Cargo.toml: cargo-lambda must build with the lambda feature")
sam = tomllib.loads(Path("samconfig.toml").read_text())["default"]
for command in ("build", "sync"):
    if sam.get(command, {}).get("parameters", {}).get("beta_features") is not True:
        errors.append(f"samconfig.toml: [default.{command}.parameters] beta_features = true (rust-cargolambda is a beta build method)")
if errors:
    print("\n".join(f"build: {e}" for e in errors), file=sys.stderr)
    sys.exit(1)
print(f"build: sam build uses the lambda-release profile's settings {want}")
PY

# Package size: every function ≤ 8 MB zipped, in decimal megabytes
# (8,000,000 bytes; the largest, ~7.45 MB, leave 7 %). Checked on what
# `sam build` left in .aws-sam/build, when it is there: CI does not run the aarch64 build (the
# first one compiles ~400 crates with fat LTO); run `tests/sam_build.sh`
# (or plain `sam build`) first, then this script.
python3 - <<'PY'
import io, sys, zipfile
from pathlib import Path

LIMIT = 8_000_000
built = sorted(Path(".aws-sam/build").glob("*/bootstrap"))
if not built:
    print("size: no .aws-sam/build/*/bootstrap (run tests/sam_build.sh to check the package sizes)")
    sys.exit(0)
over = []
for f in built:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.write(f, "bootstrap")
    size = len(buf.getvalue())
    if size > LIMIT:
        over.append(f"{f.parent.name}: {size:,} bytes zipped")
if over:
    print("size: over 8,000,000 bytes zipped:\n  " + "\n  ".join(over), file=sys.stderr)
    sys.exit(1)
print(f"size: {len(built)} built function(s), each at most 8,000,000 bytes zipped")
PY
