"""Tests for the SNS filter-policy engine, built from the examples in AWS's SNS developer guide."""

from __future__ import annotations

import re
from typing import Any

import pytest

from framework.exceptions import DeclarationError, InvalidFilterPolicyError
from framework.semantics.filter_policy import matches, validate

# The example message of AWS's "Example filter policies" page, as attributes and as a body.
EXAMPLE_ATTRIBUTES: dict[str, Any] = {
    "customer_interests": ["soccer", "rugby", "hockey"],
    "store": "example_corp",
    "event": "order_placed",
    "price_usd": 210.75,
}
EXAMPLE_BODY: dict[str, Any] = dict(EXAMPLE_ATTRIBUTES)

ACCEPTING_POLICY: dict[str, Any] = {
    "store": ["example_corp"],
    "event": [{"anything-but": "order_cancelled"}],
    "customer_interests": ["rugby", "football", "baseball"],
    "price_usd": [{"numeric": [">=", 100]}],
}
REJECTING_POLICY: dict[str, Any] = {
    "store": ["example_corp"],
    "event": ["order_cancelled"],
    "encrypted": [False],
    "customer_interests": ["basketball", "baseball"],
}


def attr(policy: dict[str, Any], **attributes: Any) -> bool:
    """Match ``policy`` in MessageAttributes scope against keyword attributes."""
    return matches(policy, attributes=attributes)


def body(policy: dict[str, Any], message: Any) -> bool:
    """Match ``policy`` in MessageBody scope against a parsed JSON body."""
    return matches(policy, attributes={}, body=message, scope="MessageBody")


def refused(policy: Any, pattern: str, scope: Any = "MessageAttributes") -> None:
    """Assert that validation refuses ``policy`` with a message containing ``pattern``."""
    with pytest.raises(InvalidFilterPolicyError, match=re.escape(pattern)):
        validate(policy, scope=scope)


# --- AWS's example message and policies -------------------------------------------------------


def test_aws_accepting_example_policy_matches_example_message() -> None:
    """AWS's accepting example policy matches its example message in both scopes."""
    assert attr(ACCEPTING_POLICY, **EXAMPLE_ATTRIBUTES)
    assert body(ACCEPTING_POLICY, EXAMPLE_BODY)


def test_aws_rejecting_example_policy_rejects_example_message() -> None:
    """AWS's rejecting example policy rejects its example message in both scopes."""
    assert not attr(REJECTING_POLICY, **EXAMPLE_ATTRIBUTES)
    assert not body(REJECTING_POLICY, EXAMPLE_BODY)


def test_policy_key_absent_from_message_rejects_it() -> None:
    """A key the message lacks (AWS's ``encrypted``) rejects it whatever its values."""
    assert not attr({"encrypted": [False, True, "yes"]}, **EXAMPLE_ATTRIBUTES)
    assert attr({"encrypted": [False]}, encrypted=False, **EXAMPLE_ATTRIBUTES)


def test_none_and_empty_policies_match_everything() -> None:
    """No policy, or an empty one, accepts any message, even a non-JSON body."""
    assert matches(None, attributes={})
    assert matches({}, attributes={"a": "b"})
    assert matches(None, attributes={}, body="plain text", scope="MessageBody")


def test_message_keys_not_in_policy_are_ignored() -> None:
    """Attributes the policy does not name play no part in matching."""
    assert attr({"store": ["example_corp"]}, **EXAMPLE_ATTRIBUTES, extra="anything")


# --- exact matching ---------------------------------------------------------------------------


def test_exact_string_matches_any_listed_value() -> None:
    """``["rugby", "tennis"]`` matches rugby or tennis but not baseball."""
    policy = {"customer_interests": ["rugby", "tennis"]}
    assert attr(policy, customer_interests="rugby")
    assert attr(policy, customer_interests="tennis")
    assert not attr(policy, customer_interests="baseball")
    assert body(policy, {"customer_interests": "tennis"})
    assert not body(policy, {"customer_interests": "baseball"})


def test_exact_string_is_case_sensitive() -> None:
    """String comparison is case-sensitive, as AWS's constraints state."""
    assert not attr({"store": ["example_corp"]}, store="Example_Corp")


def test_string_array_matches_when_any_element_matches() -> None:
    """A String.Array matches when any element is a listed value."""
    policy = {"customer_interests": ["rugby", "tennis"]}
    assert attr(policy, customer_interests=["rugby", "tennis"])
    assert attr(policy, customer_interests=["soccer", "rugby"])
    assert not attr(policy, customer_interests=["baseball"])
    assert not attr(policy, customer_interests=[])


def test_string_policy_value_does_not_match_a_number() -> None:
    """The policy string "100" matches the string "100" only, never the number 100."""
    assert attr({"price": ["100"]}, price="100")
    assert not attr({"price": ["100"]}, price=100)


def test_number_policy_value_matches_equal_numbers_only() -> None:
    """A policy number matches equal numbers (301.5 == 3.015e2, 100 == 100.0), not strings."""
    assert attr({"price_usd": [301.5]}, price_usd=3.015e2)
    assert attr({"price": [100]}, price=100.0)
    assert not attr({"price": [100]}, price="100")
    assert not attr({"price": [100]}, price=101)


def test_boolean_policy_values_match_only_booleans() -> None:
    """In a body, JSON true matches ``[true]``; the string "true" and the number 1 do not."""
    assert body({"encrypted": [True]}, {"encrypted": True})
    assert not body({"encrypted": [True]}, {"encrypted": False})
    assert not body({"encrypted": [True]}, {"encrypted": "true"})
    assert not body({"encrypted": [True]}, {"encrypted": 1})
    assert not body({"count": [1]}, {"count": True})


def test_boolean_attribute_matches_boolean_policy_value() -> None:
    """A Python bool attribute is the literal true/false, not the string "true"."""
    assert attr({"encrypted": [False]}, encrypted=False)
    assert not attr({"encrypted": ["false"]}, encrypted=False)


def test_null_policy_value_matches_json_null_but_not_absence() -> None:
    """``[null]`` matches a body property set to null but not a missing property."""
    assert body({"deleted_at": [None]}, {"deleted_at": None})
    assert not body({"deleted_at": [None]}, {"other": 1})
    assert not body({"deleted_at": [None]}, {"deleted_at": "2024-01-01"})


# --- string operators -------------------------------------------------------------------------


def test_prefix_matches_start_of_string() -> None:
    """``{"prefix": "bas"}`` matches baseball and basketball, not rugby."""
    policy = {"customer_interests": [{"prefix": "bas"}]}
    assert attr(policy, customer_interests="baseball")
    assert body(policy, {"customer_interests": "basketball"})
    assert not attr(policy, customer_interests="rugby")


def test_suffix_matches_end_of_string() -> None:
    """``{"suffix": "ball"}`` matches baseball and basketball, not rugby."""
    policy = {"customer_interests": [{"suffix": "ball"}]}
    assert attr(policy, customer_interests="basketball")
    assert body(policy, {"customer_interests": "baseball"})
    assert not attr(policy, customer_interests="rugby")


def test_equals_ignore_case_matches_any_casing() -> None:
    """``{"equals-ignore-case": "tennis"}`` matches TENNIS, Tennis and teNnis."""
    policy = {"customer_interests": [{"equals-ignore-case": "tennis"}]}
    assert attr(policy, customer_interests="TENNIS")
    assert attr(policy, customer_interests="Tennis")
    assert body(policy, {"customer_interests": "teNnis"})
    assert not attr(policy, customer_interests="tennis-club")


def test_string_operators_never_match_numbers() -> None:
    """Prefix, suffix and equals-ignore-case apply to strings only."""
    assert not attr({"code": [{"prefix": "1"}]}, code=123)
    assert not attr({"code": [{"suffix": "3"}]}, code=123)
    assert not attr({"code": [{"equals-ignore-case": "123"}]}, code=123)
    assert attr({"code": [{"prefix": "1"}]}, code="123")


def test_wildcard_matches_runs_of_characters() -> None:
    """``{"wildcard": "*ball"}`` matches baseball, and ``a*c`` matches ac and abbc."""
    assert attr({"customer_interests": [{"wildcard": "*ball"}]}, customer_interests="baseball")
    assert not attr({"customer_interests": [{"wildcard": "*ball"}]}, customer_interests="balls")
    assert attr({"k": [{"wildcard": "a*c"}]}, k="ac")
    assert attr({"k": [{"wildcard": "a*c"}]}, k="abbc")


def test_wildcard_escaped_star_is_literal() -> None:
    """In a wildcard, ``\\*`` matches a literal star only."""
    policy = {"k": [{"wildcard": "a\\*c"}]}
    assert attr(policy, k="a*c")
    assert not attr(policy, k="abc")


# --- anything-but -----------------------------------------------------------------------------


def test_anything_but_list_rejects_listed_values() -> None:
    """``anything-but ["rugby", "tennis"]`` matches baseball and football but not rugby."""
    policy = {"customer_interests": [{"anything-but": ["rugby", "tennis"]}]}
    assert attr(policy, customer_interests="baseball")
    assert body(policy, {"customer_interests": "football"})
    assert not attr(policy, customer_interests="rugby")


def test_anything_but_array_matches_when_some_element_is_not_excluded() -> None:
    """AWS's examples: ["rugby", "baseball"] passes anything-but rugby/tennis, ["rugby"] fails."""
    policy = {"customer_interests": [{"anything-but": ["rugby", "tennis"]}]}
    assert attr(policy, customer_interests=["rugby", "baseball"])
    assert body(policy, {"customer_interests": ["rugby", "baseball"]})
    assert not attr(policy, customer_interests=["rugby"])
    assert not body(policy, {"customer_interests": ["rugby"]})


def test_anything_but_single_value() -> None:
    """``anything-but "order_cancelled"`` matches order_placed but not order_cancelled."""
    policy = {"event": [{"anything-but": "order_cancelled"}]}
    assert attr(policy, event="order_placed")
    assert not attr(policy, event="order_cancelled")


def test_anything_but_numbers() -> None:
    """``anything-but [100, 500]`` matches 101, 100.1 and [100, 50] but not 100."""
    policy = {"price": [{"anything-but": [100, 500]}]}
    assert attr(policy, price=101)
    assert attr(policy, price=100.1)
    assert attr(policy, price=[100, 50])
    assert body(policy, {"price": [100, 50]})
    assert not attr(policy, price=100)
    assert not body(policy, {"price": 100})


def test_anything_but_single_number() -> None:
    """``anything-but 5`` rejects the number 5 and accepts other numbers."""
    policy = {"n": [{"anything-but": 5}]}
    assert not attr(policy, n=5)
    assert not attr(policy, n=5.0)
    assert attr(policy, n=6)


def test_anything_but_does_not_match_absent_key() -> None:
    """anything-but needs the key present: a message without it is rejected."""
    assert not attr({"event": [{"anything-but": "order_cancelled"}]}, store="example_corp")
    assert not body({"event": [{"anything-but": ["x"]}]}, {"store": "example_corp"})


def test_anything_but_with_exists_false_also_matches_absent_key() -> None:
    """Combining anything-but with ``{"exists": false}`` also accepts a missing key."""
    policy = {"event": [{"anything-but": "order_cancelled"}, {"exists": False}]}
    assert attr(policy, store="example_corp")
    assert attr(policy, event="order_placed")
    assert not attr(policy, event="order_cancelled")


def test_anything_but_prefix() -> None:
    """anything-but prefix ``order-`` matches data-entry and order_number, not order-cancelled."""
    policy = {"event": [{"anything-but": {"prefix": "order-"}}]}
    assert attr(policy, event="data-entry")
    assert body(policy, {"event": "order_number"})
    assert not attr(policy, event="order-cancelled")


def test_anything_but_suffix() -> None:
    """anything-but suffix ``ball`` matches hockey, rugby and soccer but not basketball."""
    policy = {"customer_interests": [{"anything-but": {"suffix": "ball"}}]}
    assert body(policy, {"customer_interests": ["hockey", "rugby", "soccer"]})
    assert not body(policy, {"customer_interests": ["baseball", "basketball"]})


def test_anything_but_wildcard() -> None:
    """anything-but wildcard ``*ball`` rejects values the wildcard matches."""
    policy = {"customer_interests": [{"anything-but": {"wildcard": "*ball"}}]}
    assert attr(policy, customer_interests="hockey")
    assert not attr(policy, customer_interests=["baseball", "basketball"])


# --- numeric ----------------------------------------------------------------------------------


def test_numeric_equals() -> None:
    """``numeric ["=", 301.5]`` matches 301.5 and 3.015e2 in both scopes."""
    policy = {"price_usd": [{"numeric": ["=", 301.5]}]}
    assert attr(policy, price_usd=301.5)
    assert body(policy, {"price_usd": 3.015e2})
    assert not attr(policy, price_usd=301.6)


def test_numeric_less_than_zero_matches_negatives_only() -> None:
    """``numeric ["<", 0]`` matches negative numbers only."""
    policy = {"price_usd": [{"numeric": ["<", 0]}]}
    assert attr(policy, price_usd=-0.5)
    assert not attr(policy, price_usd=0)


def test_numeric_range_respects_open_and_closed_bounds() -> None:
    """``[">", 0, "<=", 150]`` matches positives up to and including 150."""
    policy = {"price_usd": [{"numeric": [">", 0, "<=", 150]}]}
    assert attr(policy, price_usd=150)
    assert attr(policy, price_usd=0.01)
    assert not attr(policy, price_usd=0)
    assert not attr(policy, price_usd=150.01)


def test_numeric_ignores_strings_and_booleans() -> None:
    """Numeric operators match numbers only, not numeric strings or booleans."""
    assert not attr({"n": [{"numeric": [">", 0]}]}, n="99")
    assert not body({"n": [{"numeric": [">", 0]}]}, {"n": True})


def test_numbers_compare_to_five_decimal_places() -> None:
    """AWS keeps five decimal digits, so 1.000001 equals 1 but 1.00001 does not."""
    assert attr({"n": [{"numeric": ["=", 1]}]}, n=1.000001)
    assert not attr({"n": [{"numeric": ["=", 1]}]}, n=1.00001)


# --- exists -----------------------------------------------------------------------------------


def test_exists_true_requires_key() -> None:
    """``{"exists": true}`` on store matches messages with a store (a value, see below)."""
    policy = {"store": [{"exists": True}]}
    assert attr(policy, store="fans", customer_interests=["baseball", "basketball"])
    assert body(policy, {"store": "fans", "customer_interests": ["baseball"]})
    assert not attr(policy, customer_interests=["baseball", "basketball"])
    assert not body(policy, {"customer_interests": ["baseball", "basketball"]})


def test_exists_false_requires_absence() -> None:
    """``{"exists": false}`` on store matches only messages without a store."""
    policy = {"store": [{"exists": False}]}
    assert attr(policy, customer_interests=["baseball", "basketball"])
    assert body(policy, {"customer_interests": ["baseball", "basketball"]})
    assert not attr(policy, store="fans")
    assert not body(policy, {"store": "fans"})


def test_binary_attribute_counts_as_absent() -> None:
    """SNS ignores Binary attributes, so bytes do not satisfy ``exists: true``."""
    assert not attr({"blob": [{"exists": True}]}, blob=b"\x00")
    assert attr({"blob": [{"exists": False}]}, blob=b"\x00", other="x")


# AWS, "Key matching" (sns/latest/dg/attribute-key-matching.html): "exists": true matches when
# "the key [has] a non-null and non-empty value"; "exists": false "only matches if at least one
# attribute is present. An empty set of attributes results in the filter not matching."


def test_exists_true_needs_a_non_null_non_empty_value_in_the_body() -> None:
    """A body key set to null, "", [] or [null] does not exist for ``exists: true``."""
    policy = {"store": [{"exists": True}]}
    empties: list[Any] = [None, "", [], [None], {}]
    for empty in empties:
        assert not body(policy, {"store": empty, "other": 1}), empty
    assert body(policy, {"store": 0})
    assert body(policy, {"store": False})
    assert body(policy, {"store": [None, "fans"]})


def test_exists_false_is_the_complement_of_exists_true_for_a_present_key() -> None:
    """Where ``exists: true`` sees no value (null, ""), ``exists: false`` matches."""
    policy = {"store": [{"exists": False}]}
    assert body(policy, {"store": None, "other": 1})
    assert body(policy, {"store": "", "other": 1})
    assert not body(policy, {"store": 0})


def test_exists_false_does_not_match_an_empty_attribute_set() -> None:
    """No attributes at all (or an empty body object) match no ``exists: false``."""
    policy = {"store": [{"exists": False}]}
    assert not attr(policy)
    assert not body(policy, {})
    assert not body(policy, {"nested": {}, "list": []})  # no leaf: still an empty set
    assert not attr(policy, blob=b"\x00")  # Binary attributes are invisible to filtering
    assert attr(policy, other="x")
    assert body(policy, {"other": None})  # a null leaf is a property of the body


def test_exists_false_on_empty_set_also_fails_inside_or() -> None:
    """The empty-set rule holds in every ``$or`` alternative."""
    policy = {"$or": [{"store": [{"exists": False}]}, {"event": [{"exists": False}]}]}
    assert not attr(policy)
    assert attr(policy, store="x")


def test_exists_true_with_empty_string_attribute_does_not_match() -> None:
    """An empty String attribute (SNS itself refuses one at publish) is no value."""
    assert not attr({"store": [{"exists": True}]}, store="", other="x")
    assert not attr({"store": [{"exists": True}]}, store=[])


# Each operator against null, "", [] and an absent key. Exact values are type-strict
# ("Attribute string value matching", "numeric value matching"); a string operator needs a
# string; anything-but needs the key present ("anything-but matching") and a non-null value.


@pytest.mark.parametrize(
    "rule",
    [
        "x",
        "",
        5,
        True,
        {"prefix": ""},
        {"suffix": ""},
        {"equals-ignore-case": ""},
        {"wildcard": "*"},
        {"numeric": [">=", 0]},
        {"cidr": "10.0.0.0/8"},
        {"anything-but": "x"},
        {"anything-but": {"prefix": "x"}},
        {"anything-but": {"suffix": "x"}},
        {"exists": True},
    ],
)
def test_no_operator_but_null_matches_a_null_value(rule: Any) -> None:
    """null is no value: only ``[null]`` and ``exists: false`` accept a key set to null."""
    assert not body({"k": [rule]}, {"k": None, "other": 1})
    assert not body({"k": [rule]}, {"other": 1})  # nor an absent key
    assert not body({"k": [rule]}, {"k": [], "other": 1})  # nor an empty array


def test_empty_string_is_a_string() -> None:
    """ "" equals "", starts and ends with "", and is outside anything-but ["x"]."""
    assert body({"k": [""]}, {"k": ""})
    assert not body({"k": [""]}, {"k": None})
    assert body({"k": [{"prefix": ""}]}, {"k": ""})
    assert body({"k": [{"suffix": ""}]}, {"k": ""})
    assert body({"k": [{"equals-ignore-case": ""}]}, {"k": ""})
    assert body({"k": [{"anything-but": "x"}]}, {"k": ""})
    assert body({"k": [{"anything-but": {"prefix": "x"}}]}, {"k": ""})
    assert not body({"k": [{"numeric": [">=", 0]}]}, {"k": ""})
    assert not body({"k": [{"cidr": "10.0.0.0/8"}]}, {"k": ""})
    assert attr({"k": [""]}, k="")


def test_empty_attribute_set_matches_no_value_rule() -> None:
    """A message without attributes passes only a policy without keys."""
    for rule in ("x", {"prefix": "x"}, {"anything-but": "x"}, {"numeric": [">", 0]}):
        assert not attr({"k": [rule]})
    assert not matches({"k": ["x"]}, attributes={}, body=None, scope="MessageBody")


def test_nested_key_matching_sees_arrays_of_objects() -> None:
    """A nested key matches inside an array of objects, element by element."""
    policy = {"order": {"items": {"sku": [{"prefix": "A-"}]}}}
    assert body(policy, {"order": {"items": [{"sku": "B-1"}, {"sku": "A-2"}]}})
    assert not body(policy, {"order": {"items": [{"sku": "B-1"}, {"sku": None}]}})
    assert not body(policy, {"order": {"items": []}})
    absent = {"order": {"items": {"sku": [{"exists": False}]}}}
    assert body(absent, {"order": {"id": 1, "items": []}})


# --- cidr -------------------------------------------------------------------------------------


def test_cidr_matches_addresses_in_network() -> None:
    """``10.0.0.0/24`` matches 10.0.0.0 and 10.0.0.255 but not 10.1.1.0."""
    policy = {"source_ip": [{"cidr": "10.0.0.0/24"}]}
    assert attr(policy, source_ip="10.0.0.0")
    assert body(policy, {"source_ip": "10.0.0.255"})
    assert not attr(policy, source_ip="10.1.1.0")


def test_cidr_rejects_non_addresses_and_other_families() -> None:
    """Non-IP strings and IPv6 addresses never fall in an IPv4 network; IPv6 works too."""
    assert not attr({"ip": [{"cidr": "10.0.0.0/24"}]}, ip="not-an-ip")
    assert not attr({"ip": [{"cidr": "10.0.0.0/24"}]}, ip="::1")
    assert attr({"ip": [{"cidr": "2001:db8::/32"}]}, ip="2001:db8::7")


# --- AND / OR ---------------------------------------------------------------------------------


def test_keys_are_anded() -> None:
    """rugby AND price over 100: both must hold."""
    policy = {"customer_interests": ["rugby"], "price_usd": [{"numeric": [">", 100]}]}
    assert attr(policy, customer_interests="rugby", price_usd=101)
    assert not attr(policy, customer_interests="rugby", price_usd=100)
    assert not attr(policy, customer_interests="tennis", price_usd=101)


def test_or_operator_matches_either_alternative() -> None:
    """``"source" && ("metricName" || "namespace")`` from AWS's OR operator example."""
    policy = {
        "source": ["aws.cloudwatch"],
        "$or": [{"metricName": ["CPUUtilization"]}, {"namespace": ["AWS/EC2"]}],
    }
    assert attr(policy, source="aws.cloudwatch", metricName="CPUUtilization")
    assert attr(policy, source="aws.cloudwatch", namespace="AWS/EC2")
    assert body(policy, {"source": "aws.cloudwatch", "namespace": "AWS/EC2"})
    assert not attr(policy, source="aws.cloudwatch", namespace="AWS/ES")
    assert not attr(policy, source="aws.events", metricName="CPUUtilization")


def test_nested_or_operator_in_body() -> None:
    """AWS's nested ``$or`` policy: one alternative at top level AND one inside detail."""
    policy = {
        "$or": [
            {"metricName": ["CPUUtilization", "ReadLatency"]},
            {"namespace": ["AWS/EC2", "AWS/ES"]},
        ],
        "detail": {
            "scope": ["Service"],
            "$or": [{"source": ["aws.cloudwatch"]}, {"type": ["CloudWatch Alarm State Change"]}],
        },
    }
    ok = {"scope": "Service", "source": "aws.cloudwatch"}
    t = "CloudWatch Alarm State Change"
    assert body(policy, {"metricName": "CPUUtilization", "detail": ok})
    assert body(policy, {"namespace": "AWS/ES", "detail": ok})
    assert body(policy, {"metricName": "ReadLatency", "detail": {"scope": "Service", "type": t}})
    assert not body(policy, {"namespace": "AWS/EC2", "detail": {"scope": "Service", "type": "x"}})
    assert not body(policy, {"metricName": "CPUUtilization", "detail": {"scope": "Service"}})
    assert not body(policy, {"metricName": "CPUUtilization", "scope": "Service"})


def test_or_with_operator_keys_is_an_ordinary_key() -> None:
    """AWS reads ``$or`` over operator objects as a key named "$or", so this policy is invalid."""
    refused({"$or": [{"numeric": 123}, {"prefix": "abc"}]}, "filter policy key '$or': numeric")


def test_or_with_one_alternative_is_an_ordinary_key() -> None:
    """``$or`` needs at least two objects, otherwise its objects read as unknown operators."""
    refused({"$or": [{"a": ["x"]}]}, "unknown operator 'a'")


# --- MessageBody scope: nesting and arrays ----------------------------------------------------


def test_nested_policy_matches_nested_body() -> None:
    """``{"object": {"key": [prefix "auto-", "hardcodedvalue"]}}`` from AWS's payload blog."""
    policy = {"object": {"key": [{"prefix": "auto-"}, "hardcodedvalue"]}}
    assert body(policy, {"object": {"key": "auto-test"}})
    assert body(policy, {"object": {"key": "hardcodedvalue"}})
    assert not body(policy, {"object": {"key": "test-auto"}})
    assert not body(policy, {"key": "auto-test"})


def test_nested_exists_false() -> None:
    """Nested and top-level ``exists: false`` reject bodies that carry those properties."""
    policy = {
        "object": {"key": [{"prefix": "auto-"}], "nested_key": [{"exists": False}]},
        "test": [{"exists": False}],
    }
    assert body(policy, {"object": {"key": "auto-test"}})
    assert not body(policy, {"object": {"key": "auto-test"}, "test": "just-exists"})
    assert not body(policy, {"object": {"key": "auto-test", "nested_key": "just-exists"}})


def test_dotted_policy_key_matches_nested_and_dotted_body_keys() -> None:
    """AWS flattens both sides: key ``object.nested`` matches either body spelling."""
    policy = {"object.nested": ["string.value"]}
    assert body(policy, {"object": {"nested": "string.value"}})
    assert body(policy, {"object.nested": "string.value"})
    assert not body(policy, {"object": {"nested": "other"}})


def test_body_arrays_of_objects_match_element_wise() -> None:
    """An S3 event's Records array matches when a record has the nested properties."""
    policy = {
        "Records": {
            "s3": {"object": {"key": [{"prefix": "auto-"}]}},
            "eventName": [{"prefix": "ObjectCreated:"}],
        }
    }
    record = {"eventName": "ObjectCreated:Put", "s3": {"object": {"key": "auto-insurance.xml"}}}
    assert body(policy, {"Records": [record]})
    assert body(policy, {"Records": [{"eventName": "ObjectRemoved:Delete"}, record]})
    removed = {**record, "eventName": "ObjectRemoved:Delete"}
    assert not body(policy, {"Records": [removed]})


def test_body_array_of_scalars_matches_any_element() -> None:
    """``{"headers": {"route-to": ["queue1"]}}`` matches a route-to list containing queue1."""
    policy = {"headers": {"route-to": ["queue1"]}}
    assert body(policy, {"headers": {"route-to": ["queue1", "queue2"]}})
    assert not body(policy, {"headers": {"route-to": ["queue3"]}})


def test_non_object_body_fails_a_policy_with_keys() -> None:
    """A body that is not a JSON object fails any body policy, even ``exists: false``."""
    assert not body({"test": [{"exists": False}]}, "Regular string message")
    assert not body({"test": [{"exists": False}]}, ["a", "b"])
    assert body({}, "Regular string message")


def test_each_scope_reads_only_its_own_input() -> None:
    """Attribute scope ignores the body and body scope ignores the attributes."""
    policy = {"store": ["example_corp"]}
    assert not matches(policy, attributes={}, body={"store": "example_corp"})
    assert not matches(policy, attributes={"store": "example_corp"}, body={}, scope="MessageBody")


# --- invalid policies -------------------------------------------------------------------------


def test_error_is_a_declaration_error() -> None:
    """InvalidFilterPolicyError is a DeclarationError, so declaration handling catches it."""
    with pytest.raises(DeclarationError):
        validate({"k": []})


def test_matches_raises_on_invalid_policy() -> None:
    """``matches`` validates too, instead of quietly matching a broken policy."""
    with pytest.raises(InvalidFilterPolicyError, match="empty value lists"):
        matches({"store": []}, attributes={"store": "x"})


def test_non_mapping_policy_refused() -> None:
    """A policy must be a JSON object."""
    refused(["store"], "must be a JSON object")
    refused("store", "must be a JSON object")


def test_unknown_scope_refused() -> None:
    """Only MessageAttributes and MessageBody are scopes."""
    refused({"a": ["b"]}, "scope 'Body' is not one of", scope="Body")


def test_nested_policy_refused_in_attribute_scope() -> None:
    """Nesting is for MessageBody scope only."""
    refused({"object": {"key": [{"prefix": "auto-"}]}}, "key 'object': scope MessageAttributes")
    validate({"object": {"key": [{"prefix": "auto-"}]}}, scope="MessageBody")


def test_empty_value_list_refused() -> None:
    """An empty list of values is refused."""
    refused({"store": []}, "filter policy key 'store': empty value lists are not allowed")


def test_empty_nested_object_refused() -> None:
    """A nested object without keys constrains nothing and is refused."""
    refused({"detail": {}}, "filter policy key 'detail': nested object is empty", "MessageBody")


def test_scalar_instead_of_list_refused() -> None:
    """Values must be wrapped in a list: ``{"key_a": "value_one"}`` is refused."""
    refused({"key_a": "value_one"}, "key 'key_a': must be an object or an array")
    refused({"key_a": 5}, "key 'key_a': must be an object or an array")


def test_unknown_operator_refused() -> None:
    """An operator AWS does not define is refused by name."""
    refused({"price": [{"foo": 1}]}, "filter policy key 'price': unknown operator 'foo'")


def test_operator_object_with_two_operators_refused() -> None:
    """An operator object holds exactly one operator."""
    refused({"k": [{"suffix": "value", "prefix": "value2"}]}, "exactly one operator")
    refused({"k": [{}]}, "exactly one operator, got none")


def test_nested_list_value_refused() -> None:
    """A list inside the value list is not a valid value."""
    refused({"key": [["value"]]}, "key 'key': values must be strings, numbers")


@pytest.mark.parametrize("operator", ["prefix", "suffix", "equals-ignore-case", "wildcard"])
def test_string_operator_with_non_string_refused(operator: str) -> None:
    """prefix, suffix, equals-ignore-case and wildcard take a string, not a number or list."""
    refused({"key": [{operator: 100}]}, f"key 'key': {operator} must be a string")
    refused({"key": [{operator: ["a", "b"]}]}, f"{operator} must be a string")


def test_exists_with_non_boolean_refused() -> None:
    """exists takes true or false only."""
    refused({"key": [{"exists": None}]}, "exists must be true or false, got null")
    refused({"key": [{"exists": "no"}]}, "exists must be true or false")


def test_numeric_bad_operator_refused() -> None:
    """An unknown comparison operator is named in the error."""
    refused(
        {"price": [{"numeric": [">>", 5]}]},
        "filter policy key 'price': numeric operator '>>' is not one of =, <, <=, >, >=",
    )


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ([], "numeric takes [op, number]"),
        (["operator"], "numeric takes [op, number]"),
        ([1, "<="], "numeric operator 1 is not one of"),
        (["=", "000"], "numeric operand of '=' must be a number, got '000'"),
        ([">="], "numeric takes [op, number]"),
        (["<", 100, ">", 10], "numeric range must be ['>' or '>='"),
        ([">=", 1, ">", 2], "numeric range must be"),
        ([">", 3, "<", 1], "numeric range bottom 3 must be less than top 1"),
        ([">=", 5, "<=", 5], "numeric range bottom 5 must be less than top 5"),
        ([">", 20, "<="], "numeric takes [op, number]"),
        ([">", 20, "<", "30"], "numeric operand of '<' must be a number"),
        ([">", 20, "<", 30, "<", 50], "numeric takes [op, number]"),
        (["=", True], "numeric operand of '=' must be a number"),
        ("> 5", "numeric takes [op, number]"),
    ],
)
def test_malformed_numeric_refused(expression: Any, message: str) -> None:
    """Each malformed numeric expression AWS refuses is refused with a reason."""
    refused({"key": [{"numeric": expression}]}, f"filter policy key 'key': {message}")


def test_numeric_operand_outside_aws_range_refused() -> None:
    """Numeric operands must lie within -10^9..10^9."""
    refused({"n": [{"numeric": [">", 1_000_000_001]}]}, "outside AWS's range")
    validate({"n": [{"numeric": [">=", -1_000_000_000, "<=", 1_000_000_000]}]})


def test_non_finite_numbers_refused() -> None:
    """NaN and infinity are not JSON numbers."""
    refused({"n": [float("nan")]}, "is not finite")
    refused({"n": [{"numeric": [">", float("inf")]}]}, "must be a number")


@pytest.mark.parametrize(
    ("anything_but", "message"),
    [
        ([], "anything-but list is empty"),
        ({"exists": False}, "anything-but takes values or one of prefix, suffix, wildcard"),
        ({"wrong-operator": None}, "prefix, suffix, wildcard, got 'wrong-operator'"),
        ({"prefix": False}, "anything-but prefix must be a string"),
        ([True], "anything-but values must be strings or numbers"),
        (None, "anything-but values must be strings or numbers"),
    ],
)
def test_malformed_anything_but_refused(anything_but: Any, message: str) -> None:
    """anything-but takes a value, a list of values, or a prefix/suffix/wildcard object."""
    refused({"key": [{"anything-but": anything_but}]}, "filter policy key 'key': ")
    refused({"key": [{"anything-but": anything_but}]}, message)


@pytest.mark.parametrize("cidr", ["10.0.0.0", "10.0.0.0/33", "nope/8", 5])
def test_malformed_cidr_refused(cidr: Any) -> None:
    """cidr takes a network in CIDR notation."""
    refused({"source_ip": [{"cidr": cidr}]}, "filter policy key 'source_ip': cidr")


def test_consecutive_wildcards_refused() -> None:
    """A wildcard with ``**`` is refused."""
    refused({"k": [{"wildcard": "a**b"}]}, "consecutive '*'")


def test_error_names_nested_key_path() -> None:
    """Errors in nested policies name the dotted path of the key."""
    refused({"detail": {"price": [{"numeric": ["~", 1]}]}}, "key 'detail.price'", "MessageBody")


# --- limits -----------------------------------------------------------------------------------


def test_five_keys_accepted_six_refused() -> None:
    """A policy may have five keys; a sixth is refused."""
    five = {f"key{i}": [f"value{i}"] for i in range(1, 6)}
    validate(five)
    refused({**five, "key6": ["value6"]}, "policy has 6 keys")


def test_nested_keys_do_not_count_toward_key_limit() -> None:
    """In MessageBody scope only top-level keys count (AWS's Security Hub finding example)."""
    policy = {
        "state": ["SUCCESS"],
        "severity": [{"exists": True}],
        "message": [{"exists": True}],
        "finding": {
            "standard_control": [{"exists": True}],
            "region": [{"exists": True}],
            "account": [{"exists": True}],
        },
    }
    validate(policy, scope="MessageBody")
    refused({**policy, "a": ["1"], "b": ["2"]}, "policy has 6 keys", "MessageBody")


def test_or_alternatives_count_keys_separately() -> None:
    """Keys are counted per ``$or`` alternative: AWS's five-key OR example is valid."""
    validate(
        {
            "source": ["aws.cloudwatch"],
            "$or": [
                {"metricName": ["CPUUtilization", "ReadLatency"]},
                {"metricType": ["MetricType"], "$or": [{"metricId": [1]}, {"spaceId": [2]}]},
            ],
        }
    )
    refused(
        {"a": ["1"], "b": ["2"], "c": ["3"], "d": ["4"], "$or": [{"e": ["5"], "f": ["6"]}, {}]},
        "filter policy key '$or': alternative 2 is an empty object",
    )


def test_150_combinations_accepted_151_refused() -> None:
    """One key with 150 values is allowed; 151 values exceed the limit."""
    validate({"key": [f"value{i}" for i in range(150)]})
    refused({"key": [f"value{i}" for i in range(151)]}, "151 value combinations")


def test_combinations_multiply_across_keys() -> None:
    """Combinations multiply: 3 x 1 x 2 = 6 is fine, 100 x 51 is refused naming key1."""
    validate({"key_a": ["1", "2", "3"], "key_b": ["1"], "key_c": ["1", "2"]})
    refused(
        {"key1": [str(i) for i in range(100)], "key2": [str(i) for i in range(51)]},
        "filter policy key 'key1': policy is too complex: 5100 value combinations",
    )


def test_or_combinations_are_summed() -> None:
    """``$or`` alternatives add up: 3*6 + 3*4*4 + 3*4*7 = 150 passes, 152 does not."""

    def policy(sources: int, names: int, spaces: int) -> dict[str, Any]:
        return {
            "source": [f"s{i}" for i in range(sources)],
            "$or": [
                {"metricName": [f"m{i}" for i in range(names)]},
                {
                    "metricType": ["t1", "t2", "t3", "t4"],
                    "$or": [{"metricId": [1, 2, 3, 4]}, {"spaceId": list(range(spaces))}],
                },
            ],
        }

    validate(policy(3, 6, 7))
    refused(policy(4, 6, 4), "152 value combinations")


def test_nested_combinations_count_nesting_depth() -> None:
    """A nested key's values count times its depth: 4*3 x 3*2 = 72 passes, x 3 more fails."""
    nested = {
        "key_a": {"key_b": {"key_c": ["1", "2", "3", "4"]}},
        "key_d": {"key_e": ["1", "2", "3"]},
    }
    validate(nested, scope="MessageBody")
    refused({**nested, "key_f": ["1", "2", "3"]}, "216 value combinations", "MessageBody")


def test_nested_or_combinations() -> None:
    """AWS's nested OR example costs 32; widening it to 160 is refused."""
    small = {
        "$or": [{"metricName": ["a", "b"]}, {"namespace": ["c", "d"]}],
        "detail": {"scope": ["Service"], "$or": [{"source": ["x"]}, {"type": ["y"]}]},
    }
    validate(small, scope="MessageBody")
    big = {
        "$or": [{"metricName": ["a", "b", "c"]}, {"namespace": ["d", "e"]}],
        "detail": {"scope": ["S", "T"], "$or": [{"source": ["x"]}, {"type": ["y", "z", "w"]}]},
    }
    refused(big, "160 value combinations", "MessageBody")


def test_policy_over_256_kb_refused() -> None:
    """A policy whose JSON exceeds 256 KB is refused even within the other limits."""
    validate({"key": [f"{i:03d}" + "x" * 1500 for i in range(150)]})
    refused({"key": [f"{i:03d}" + "x" * 1800 for i in range(150)]}, "over AWS's limit of 262144")
