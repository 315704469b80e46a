"""IAM grants and credentials: no basic roles, nobody public, no long-lived keys."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from .props import get, items

BASIC_ROLES = frozenset({"roles/owner", "roles/editor", "roles/viewer"})
PUBLIC_PRINCIPALS = frozenset({"allUsers", "allAuthenticatedUsers"})

# Storage ACL resources name principals as entities ("allUsers", or "READER:allUsers" in role_entities).
_ACL_ENTITY_TYPES = frozenset(
    {
        "gcp:storage/bucketAccessControl:BucketAccessControl",
        "gcp:storage/objectAccessControl:ObjectAccessControl",
        "gcp:storage/defaultObjectAccessControl:DefaultObjectAccessControl",
    }
)
_ACL_ROLE_ENTITIES_TYPES = frozenset(
    {
        "gcp:storage/bucketACL:BucketACL",
        "gcp:storage/defaultObjectACL:DefaultObjectACL",
        "gcp:storage/objectACL:ObjectACL",
    }
)
_KEY_TYPES = {
    "gcp:serviceaccount/key:Key": "a service account key",
    "gcp:storage/hmacKey:HmacKey": "an HMAC key (a long-lived S3-style secret of a service account)",
}


def is_iam_type(resource_type: str) -> bool:
    """Every IAM member, binding and policy of the gcp provider, whatever it is attached to. The provider spells
    them both ways (``BucketIAMMember``, ``RepositoryIamMember``, ``SecretIamMember``), hence the lower case."""
    kind = resource_type.rsplit(":", 1)[-1].lower()
    return resource_type.startswith("gcp:") and kind.endswith(("iammember", "iambinding", "iampolicy"))


class _Unreadable(ValueError):
    pass


def _grants(props: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(role, member) pairs of an IAM member, binding or policy resource."""
    role = get(props, "role")
    member = get(props, "member")
    if member is not None:
        yield str(role), str(member)
    for each in items(get(props, "members")):
        yield str(role), str(each)
    policy = get(props, "policyData")
    if policy is not None:
        try:
            document = json.loads(policy) if isinstance(policy, str) else policy
            bindings = document.get("bindings", [])
        except (ValueError, AttributeError) as error:
            raise _Unreadable(f"policyData is not an IAM policy document: {error}") from None
        for binding in bindings:
            for each in binding.get("members", []):
                yield str(binding.get("role")), str(each)


def _grant_violations(props: Mapping[str, Any], bad: Callable[[str, str], bool], message: str) -> list[str]:
    """``message`` (formatted with role and member) for each grant of ``props`` that ``bad`` flags; an
    unreadable policy document is itself the violation."""
    try:
        grants = list(_grants(props))
    except _Unreadable as error:
        return [str(error)]
    return [message.format(role=role, member=member) for role, member in grants if bad(role, member)]


def no_basic_roles(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """No roles/owner, roles/editor or roles/viewer in any grant. Missing role/members: compliant (nothing granted)."""
    if not is_iam_type(resource_type):
        return []
    return _grant_violations(
        props,
        lambda role, member: role in BASIC_ROLES,
        "{role} granted to {member}: basic roles span every service, grant a predefined role",
    )


def no_public_principals(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """No allUsers/allAuthenticatedUsers in IAM grants or storage ACLs. Missing members/entities: compliant."""
    if resource_type in _ACL_ENTITY_TYPES:
        entity = str(get(props, "entity", ""))
        return [f"ACL entity {entity} makes the data public"] if entity in PUBLIC_PRINCIPALS else []
    if resource_type in _ACL_ROLE_ENTITIES_TYPES:
        return [
            f"ACL {entry} makes the data public"
            for entry in map(str, items(get(props, "roleEntities")))
            if entry.rsplit(":", 1)[-1] in PUBLIC_PRINCIPALS
        ]
    if not is_iam_type(resource_type):
        return []
    return _grant_violations(
        props, lambda role, member: member in PUBLIC_PRINCIPALS, "{role} granted to {member}, i.e. to anyone"
    )


def no_service_account_keys(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """No service account keys or HMAC keys: workloads use Workload Identity. The type alone is the violation."""
    what = _KEY_TYPES.get(resource_type)
    return [f"{what} is a long-lived credential that can leak; use Workload Identity"] if what else []
