"""CloudFront distributions on a real moto server: a private bucket origin through an origin
access control with the bucket policy statement for that distribution only; create -> plan
clean -> drift -> enforce; deletion in two passes; the status output watched by the reconciler;
invalidations (`awsd invalidate`, `Invalidator.invalidate_on`)."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import pytest

from daemon.core.invalidation import Invalidator, normalise_paths
from daemon.reconcile.apply import Applier
from daemon.reconcile.passes import Reconciler
from daemon.reconcile.plan import make_plan
from daemon.reconcile.render import render_plan
from tests.support.resources import (
    changed,
    cli,
    load,
    plan_and_apply,
    services_for,
    session,
    unique_env,
    write_config,
)

ACCOUNT = "123456789012"


def site(**fields: Any) -> dict[str, Any]:
    return {
        "mode": "enforce",
        "buckets": {"site": {"block_public_access": True}},
        "distributions": {
            "site": {
                "origin": {"bucket": "site", "path": "/www"},
                "default_root_object": "index.html",
                "comment": "status page",
                "error_responses": [{"code": 404, "page": "/404.html", "response_code": 404}],
                "tags": {"team": "web"},
                **fields,
            }
        },
    }


def distribution(boto: Any, env: str) -> dict[str, Any]:
    cf = boto("cloudfront")
    for item in cf.list_distributions()["DistributionList"].get("Items", []):
        got = cf.get_distribution_config(Id=item["Id"])
        if got["DistributionConfig"]["CallerReference"] == f"{env}-site":
            return {**item, "Config": got["DistributionConfig"], "ETag": got["ETag"]}
    raise AssertionError("no distribution")


def bucket_policy(boto: Any, env: str) -> dict[str, Any]:
    return json.loads(boto("s3").get_bucket_policy(Bucket=f"{env}-site")["Policy"])


async def test_a_private_bucket_origin_gets_its_access_control_and_policy_in_one_apply(
    configs: Any, boto: Any
):
    env = unique_env("d")
    config = load(configs, env, site())
    async with session(config) as ctx:
        plan = await make_plan(ctx)
        assert "domain_name = (known after apply)" in render_plan(plan)
        await plan_and_apply(ctx)  # creates both, then plans again for the policy
        again = await make_plan(ctx)
    assert changed(again) == {}
    found = distribution(boto, env)
    arn = found["ARN"]
    (statement,) = bucket_policy(boto, env)["Statement"]
    assert statement["Principal"] == {"Service": "cloudfront.amazonaws.com"}
    assert statement["Action"] == "s3:GetObject"
    assert statement["Resource"] == f"arn:aws:s3:::{env}-site/www/*"
    assert statement["Condition"] == {"StringEquals": {"AWS:SourceArn": arn}}
    controls = boto("cloudfront").list_origin_access_controls()["OriginAccessControlList"]
    assert f"{env}-site" in {c["Name"] for c in controls["Items"]}
    origin = found["Config"]["Origins"]["Items"][0]
    assert origin["DomainName"] == f"{env}-site.s3.us-east-1.amazonaws.com"
    tags = boto("cloudfront").list_tags_for_resource(Resource=arn)["Tags"]["Items"]
    assert {"Key": "team", "Value": "web"} in tags
    text = render_plan(again)
    assert f"distribution.site: domain_name = {found['DomainName']}" in text
    assert again.resources[0].arn == arn or any(r.arn == arn for r in again.resources)


async def test_distribution_drift_is_enforced_keeping_settings_made_elsewhere(
    configs: Any, boto: Any
):
    env = unique_env("d")
    config = load(configs, env, site())
    async with session(config) as ctx:
        await plan_and_apply(ctx)
        found = distribution(boto, env)
        edited = found["Config"]
        edited["Comment"] = "changed by hand"
        edited["DefaultRootObject"] = "other.html"
        edited["CustomErrorResponses"] = {"Quantity": 0}
        edited["HttpVersion"] = "http1.1"  # not declared: kept
        boto("cloudfront").update_distribution(
            Id=found["Id"], IfMatch=found["ETag"], DistributionConfig=edited
        )
        drift = await make_plan(ctx)
        assert set(changed(drift)["distribution.site"]) == {
            "comment",
            "default_root_object",
            "error_responses",
        }
        await plan_and_apply(ctx)
        assert changed(await make_plan(ctx)) == {}
    config = distribution(boto, env)["Config"]
    assert (config["Comment"], config["HttpVersion"]) == ("status page", "http1.1")


async def test_a_pruned_distribution_is_disabled_first_and_deleted_on_a_later_pass(
    configs: Any, boto: Any
):
    env = unique_env("d")
    async with session(load(configs, env, site())) as ctx:
        await plan_and_apply(ctx)
    gone = load(configs, env, {"mode": "enforce", "prune": True, "buckets": site()["buckets"]})
    async with session(gone) as ctx:
        plan = await make_plan(ctx)
        (delete,) = [r for r in plan.resources if r.action == "delete"]
        assert "this pass disables it, a later one deletes it" in render_plan(plan)
        first = await Applier(ctx).apply(plan)
        assert [(o.resource, o.result) for o in first.outcomes] == [(delete.resource, "pending")]
        assert distribution(boto, env)["Config"]["Enabled"] is False
        second = await Applier(ctx).apply(await make_plan(ctx))
        assert [(o.resource, o.result) for o in second.outcomes] == [(delete.resource, "done")]
        assert changed(await make_plan(ctx)) == {}
    controls = boto("cloudfront").list_origin_access_controls()["OriginAccessControlList"]
    assert f"{env}-site" not in {c["Name"] for c in controls.get("Items", [])}


@pytest.fixture
def slow_deployments(moto_endpoint: str) -> Any:
    """CloudFront's deployments take a few reads to finish (moto's state manager), as AWS's
    take minutes; back to immediate afterwards."""

    def post(path: str, body: dict[str, Any]) -> None:
        request = urllib.request.Request(
            f"{moto_endpoint}/moto-api/state-manager/{path}",
            data=json.dumps(body).encode(),
            method="POST",
        )
        urllib.request.urlopen(request, timeout=5).close()

    post(
        "set-transition",
        {
            "model_name": "cloudfront::distribution",
            "transition": {"progression": "manual", "times": 6},
        },
    )
    yield
    post("unset-transition", {"model_name": "cloudfront::distribution"})


async def test_the_reconciler_reports_a_deployment_going_from_in_progress_to_deployed(
    configs: Any, logs: Any, slow_deployments: Any
):
    env = unique_env("d")
    config = load(configs, env, site())
    async with services_for(config) as services:
        reconciler = Reconciler(config, services)
        passes = [await reconciler.run_pass()]
        while reconciler.outputs.get("distribution.site", {}).get("status") != "Deployed":
            assert len(passes) < 10, reconciler.outputs
            passes.append(await reconciler.run_pass())
    assert all(p.ok for p in passes), passes
    seen = logs.matching("distribution.site status: InProgress -> Deployed")
    assert seen and seen[0]["resource"] == "distribution.site", reconciler.outputs
    assert reconciler.outputs["distribution.site"]["status"] == "Deployed"


async def test_invalidate_on_a_declared_distribution_by_name_id_or_arn(configs: Any):
    env = unique_env("d")
    config = load(configs, env, site())
    async with session(config) as ctx:
        await plan_and_apply(ctx)
        invalidator = Invalidator(ctx.clients, ctx.targets)
        done = await invalidator.invalidate_on("site", ["/index.html", "/a b.html"], reference="v1")
        again = await invalidator.invalidate_on(
            "site", ["/index.html", "/a b.html"], reference="v1"
        )
        by_id = await invalidator.invalidate_on(done.distribution_id)
    assert done.paths == ("/a%20b.html", "/index.html")
    # AWS answers a repeated caller reference with the invalidation it made (moto makes another)
    assert again.caller_reference == done.caller_reference == "v1"
    assert by_id.paths == ("/*",) and by_id.distribution_id == done.distribution_id


def test_awsd_invalidate_by_name_with_wait_and_its_errors(configs: Any, capsys: Any):
    env = unique_env("d")
    path = write_config(configs, env, site())
    code, _, _ = cli(capsys, "apply", "--config", str(path), "--auto-approve")
    assert code == 0
    code, out, _ = cli(capsys, "invalidate", "--config", str(path), "site", "/index.html")
    assert code == 0 and "of distribution " in out and "(/index.html)" in out
    code, out, _ = cli(capsys, "invalidate", "--config", str(path), "site", "--json", "--wait", "5")
    assert code == 0 and json.loads(out)["paths"] == ["/*"]
    code, _, err = cli(capsys, "invalidate", "--config", str(path), "nosuch")
    assert code == 1 and "no CloudFront distribution 'nosuch'" in err
    code, _, err = cli(capsys, "invalidate", "--config", str(path), "site", "index.html")
    assert code == 2 and "starts with '/'" in err


def test_invalidation_paths_are_encoded_deduplicated_and_collapsed_when_too_many():
    assert normalise_paths([]) == ["/*"]
    assert normalise_paths(["/b", "/a", "/b", "/é"]) == ["/%C3%A9", "/a", "/b"]
    assert normalise_paths(["/x", "/*"]) == ["/*"]
    assert normalise_paths([f"/d{i}/*" for i in range(16)]) == ["/*"]
    assert normalise_paths([f"/p{i}" for i in range(3001)]) == ["/*"]
    with pytest.raises(ValueError, match="starts with"):
        normalise_paths(["relative"])


def test_aliases_need_a_us_east_1_certificate(configs):
    from daemon.config import ConfigError

    for fields, reason in (
        ({"aliases": ["status.example.com"]}, "aliases need a `certificate`"),
        ({"certificate": f"arn:aws:acm:eu-west-1:{ACCOUNT}:certificate/x"}, "us-east-1"),
        ({"origin": {"bucket": "site", "host": "x.example.com"}}, "exactly one of"),
    ):
        with pytest.raises(ConfigError) as caught:
            load(configs, unique_env("d"), site(**fields))
        assert reason in caught.value.render()
