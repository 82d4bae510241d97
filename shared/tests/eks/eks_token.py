#!/usr/bin/env python3
"""Writes eks_token.json: EKS bearer tokens as botocore makes them.

This is what `aws eks get-token` (awscli's customizations/eks/get_token.py)
does (with botocore's pure-Python signer): an STS client for the region, the cluster name moved from the call's
parameters into the signed header x-k8s-aws-id, a presigned GetCallerIdentity
URL valid 60 s, and `k8s-aws-v1.` + unpadded base64url of it. Only the clock
and the credentials are fixed here. The Rust test
`sandbox::kube::eks::tests::tokens_match_botocore` must produce the same.

    python3 -m pip install botocore && python3 shared/tests/eks/eks_token.py
"""

import base64
import datetime
import json
import os
from unittest import mock

# botocore's own SigV4 query signer (the awscrt one, used when awscrt is
# installed, orders the query differently and reads the clock elsewhere).
os.environ["BOTO_DISABLE_CRT"] = "true"

import botocore.auth  # noqa: E402
import botocore.session  # noqa: E402

HEADER = "x-k8s-aws-id"

CASES = [
    dict(region="eu-west-1", cluster="apna", access_key_id="AKIDEXAMPLE",
         secret_access_key="wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
         session_token=None, unix_time=1767323045),
    dict(region="us-east-1", cluster="apna-prod_1", access_key_id="ASIAEXAMPLE",
         secret_access_key="secret/with+symbols=",
         session_token="IQoJb3JpZ2luX2VjEP//session+token/=", unix_time=1798761599),
    dict(region="ap-southeast-2", cluster="Previews", access_key_id="AKIAIOSFODNN7EXAMPLE",
         secret_access_key="je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY",
         session_token=None, unix_time=1700000000),
]


def presigned_url(case):
    session = botocore.session.get_session()
    session.set_credentials(case["access_key_id"], case["secret_access_key"], case["session_token"])
    sts = session.create_client("sts", region_name=case["region"])

    def keep_cluster(params, context, **_):
        if HEADER in params:
            context[HEADER] = params.pop(HEADER)

    def sign_cluster(request, **_):
        if HEADER in request.context:
            request.headers[HEADER] = request.context[HEADER]

    sts.meta.events.register("provide-client-params.sts.GetCallerIdentity", keep_cluster)
    sts.meta.events.register("before-sign.sts.GetCallerIdentity", sign_cluster)
    now = datetime.datetime.fromtimestamp(case["unix_time"], datetime.timezone.utc).replace(tzinfo=None)
    with mock.patch.object(botocore.auth, "get_current_datetime", lambda *a, **k: now):
        return sts.generate_presigned_url(
            "get_caller_identity", Params={HEADER: case["cluster"]}, ExpiresIn=60, HttpMethod="GET"
        )


def main():
    out = []
    for case in CASES:
        url = presigned_url(case)
        token = "k8s-aws-v1." + base64.urlsafe_b64encode(url.encode()).decode().rstrip("=")
        out.append(dict(case, url=url, token=token))
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "eks_token.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=2)
        f.write("\n")
    print(f"wrote {path} (botocore {botocore.__version__})")


if __name__ == "__main__":
    main()
