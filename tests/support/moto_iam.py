"""A moto server enforcing IAM (`tests/support/iam.py`) that can check REST services' actions.

moto 5.2 recomputes a request's SigV4 signature to authenticate it, and gets it wrong for the
REST services awsd's Lambda, EFS and CloudFront kinds call (it signs the query string as a form
body): every such call fails with SignatureDoesNotMatch, even an administrator's. Here their
signatures are not recomputed (the access key is still looked up, and the action still checked
against the caller's policies); every other service is authenticated as moto does it.

Run as `python -m tests.support.moto_iam HOST PORT` (exits when stdin closes).
"""

from __future__ import annotations

import sys

from moto.iam import access_control

UNVERIFIABLE = frozenset({"lambda", "elasticfilesystem", "cloudfront"})
_check_signature = access_control.IAMRequestBase.check_signature


def check_signature(self: access_control.IAMRequestBase) -> None:
    if self._service in UNVERIFIABLE:
        return
    _check_signature(self)


access_control.IAMRequestBase.check_signature = check_signature  # type: ignore[method-assign]

if __name__ == "__main__":
    from daemon.core.local_aws import main

    main(sys.argv[1:])
