"""Adobe Destination SDK example templates, ported to Jinja, give their documented outputs.

The templates and profiles come from Adobe's Destination SDK documentation
(functionality/destination-server/message-format.md, supported-functions.md,
templating-specs.md and testing-api/streaming-destinations/render-template-api.md).
Each template is kept as documented; the only edits are the porting edits DSDK's
porting notes need (a `set` that must outlive its loop becomes a `namespace()`), and
the documentation's own loose context (`segmentMembership.ups` for
`input.profile.segmentMembership.ups`), each marked `PORT:`. They are rendered with `engine.render_template`, the
equivalent of DSDK's render-template API, against small specs in tests/data/
whose aggregation matches the documentation's example.

Where the documented result is JSON, the rendered output is parsed and compared
to it exactly (the documentation reindents its results); where it is text, the
text is compared exactly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from engine import render_template
from engine.namecheck import check_names
from engine.spec import load_spec
from engine.templating import RenderError, TemplateSource

DATA = Path(__file__).resolve().parent / "data" / "destinations"
SINGLE = str(DATA / "dsdk-single.json")  # BEST_EFFORT, maxUsersPerRequest 1: input.profile
BATCH = str(DATA / "dsdk-batch.json")  # BEST_EFFORT, maxUsersPerRequest 100: input.profiles
TEXT = str(DATA / "dsdk-text.json")  # text/plain: no JSON escaping, input.profile
BY_AUDIENCE = str(DATA / "dsdk-by-audience.json")  # includeSegmentId
BY_AUDIENCE_STATUS = str(DATA / "dsdk-by-audience-status.json")  # + includeSegmentStatus, text
BY_IDENTITY = str(DATA / "dsdk-by-identity.json")  # includeIdentity, groups email+phone, GAID+IDFA


def outputs(template: str, profiles: list[dict[str, Any]], spec: str, **kw: Any) -> list[str]:
    return [group["output"] for group in render_template(template, profiles, spec=spec, **kw)]


def only_output(template: str, profiles: list[dict[str, Any]], spec: str, **kw: Any) -> str:
    rendered = outputs(template, profiles, spec, **kw)
    assert len(rendered) == 1, rendered
    return rendered[0]


def membership(**statuses: str) -> dict[str, Any]:
    return {
        "ups": {
            audience: {"lastQualificationTime": "2019-11-20T13:15:49Z", "status": status}
            for audience, status in statuses.items()
        }
    }


# --- message-format.md: the documented input profiles ------------------------------

A1 = "36a51c13-9dd6-4d2c-8aa3-07d785ea5075"
A2 = "788d8874-8007-4253-92b7-ee6b6c20c6f3"
A3 = "8f812592-3f06-416b-bd50-e7831848a31a"

HERMIONE_ATTRIBUTES = {"firstName": {"value": "Hermione"}, "birthDate": {}}
HARRY_ATTRIBUTES = {"firstName": {"value": "Harry"}, "birthDate": {"value": "1980/07/31"}}
JOHN_IDENTITIES = {
    "email": [{"id": "johndoe@example.com"}, {"id": "jd@example.com"}],
    "external_id": [{"id": "123456"}],
}
JOHN_MEMBERSHIP = {
    "ups": {
        A1: {"lastQualificationTime": "2019-11-20T13:15:49Z", "status": "realized"},
        A2: {"lastQualificationTime": "2019-11-20T13:15:49Z", "status": "realized"},
        A3: {"lastQualificationTime": "2019-11-20T13:15:49Z", "status": "exited"},
    }
}
JOHN_RESULT_IDENTITIES = [
    {"type": "email", "id": "johndoe@example.com"},
    {"type": "email", "id": "jd@example.com"},
    {"type": "external_id", "id": "123456"},
]


# Profile attributes: `is empty`, `attribute.value.value`, quotes written by the template.
ATTRIBUTES_TEMPLATE = """\
{
    "profiles": [
        {% for profile in input.profiles %}
        {
            {% for attribute in profile.attributes %}
            "{{ attribute.key }}":
                {% if attribute.value is empty %}
                    null
                {% else %}
                    "{{ attribute.value.value }}"
                {% endif %}
            {% if not loop.last %},{% endif %}
            {% endfor %}
        }{% if not loop.last %},{% endif %}
        {% endfor %}
    ]
}
"""


ATTRIBUTES_RESULT = {
    "profiles": [
        {"firstName": "Hermione", "birthDate": None},
        {"firstName": "Harry", "birthDate": "1980/07/31"},
    ]
}


def test_profile_attributes() -> None:
    profiles = [{"attributes": HERMIONE_ATTRIBUTES}, {"attributes": HARRY_ATTRIBUTES}]
    output = only_output(ATTRIBUTES_TEMPLATE, profiles, BATCH)
    assert json.loads(output) == ATTRIBUTES_RESULT


def test_profile_attributes_escapes_what_it_prints() -> None:
    """The documented template quotes `{{ attribute.value.value }}` itself: a quote in the
    value must not end the JSON string (Pebble would have produced invalid JSON here)."""
    profiles = [{"attributes": {"firstName": {"value": 'Hermione "Mione"\n\\'}, "birthDate": {}}}]
    output = only_output(ATTRIBUTES_TEMPLATE, profiles, BATCH)
    assert json.loads(output) == {
        "profiles": [{"firstName": 'Hermione "Mione"\n\\', "birthDate": None}]
    }


# Audience membership: the `added` filter and the `removedSegments()` function.
MEMBERSHIP_TEMPLATE = """\
{
    "profiles": [
        {% for profile in input.profiles %}
        {
            "AdobeExperiencePlatformSegments": {
                "add": [
                {% for segment in profile.segmentMembership.ups | added %}
                "{{ segment.key }}"{% if not loop.last %},{% endif %}
                {% endfor %}
                ],
                "remove": [
                {# Alternative syntax for filtering audiences by status: #}
                {% for segment in removedSegments(profile.segmentMembership.ups) %}
                "{{ segment.key }}"{% if not loop.last %},{% endif %}
                {% endfor %}
                ]
            }
        }{% if not loop.last %},{% endif %}
        {% endfor %}
    ]
}
"""


def test_audience_membership() -> None:
    profile_2 = {
        "segmentMembership": {
            "ups": {
                "32396e4b-16f6-4033-9702-fc69b5e24e7c": {
                    "lastQualificationTime": "2021-08-20T17:23:04Z",
                    "status": "realized",
                },
                "af854278-894a-4192-a96b-320fbf2623fd": {
                    "lastQualificationTime": "2021-08-20T16:44:37Z",
                    "status": "realized",
                },
                "66505bf9-bc08-4bac-afbc-8b6706650ea4": {
                    "lastQualificationTime": "2019-08-20T17:23:04Z",
                    "status": "realized",
                },
            }
        }
    }
    profiles = [{"segmentMembership": JOHN_MEMBERSHIP}, profile_2]
    output = only_output(MEMBERSHIP_TEMPLATE, profiles, BATCH)
    assert json.loads(output) == {
        "profiles": [
            {"AdobeExperiencePlatformSegments": {"add": [A1, A2], "remove": [A3]}},
            {
                "AdobeExperiencePlatformSegments": {
                    "add": [
                        "32396e4b-16f6-4033-9702-fc69b5e24e7c",
                        "af854278-894a-4192-a96b-320fbf2623fd",
                        "66505bf9-bc08-4bac-afbc-8b6706650ea4",
                    ],
                    "remove": [],
                }
            },
        ]
    }


def test_existing_status_counts_as_added() -> None:
    """The deprecated status `existing` is treated like `realized` by `added`/`addedSegments`."""
    profiles = [{"segmentMembership": membership(old="existing", new="realized", gone="exited")}]
    output = only_output(MEMBERSHIP_TEMPLATE, profiles, BATCH)
    assert json.loads(output) == {
        "profiles": [
            {"AdobeExperiencePlatformSegments": {"add": ["old", "new"], "remove": ["gone"]}}
        ]
    }


# Identities: iterate identityMap namespaces; `is not empty`.
IDENTITIES_TEMPLATE = """\
{
    "profiles": [
        {% for profile in input.profiles %}
        {
            "identities": [
                {% for email in profile.identityMap.email %}
                {
                    "type": "email",
                    "id": "{{ email.id }}"
                }{% if not loop.last %},{% endif %}
                {% endfor %}

                {# Add a comma only if you have both emails and external_ids. #}
                {% if profile.identityMap.email is not empty and profile.identityMap.external_id is not empty %}
                    ,
                {% endif %}

                {% for external in profile.identityMap.external_id %}
                {
                    "type": "external_id",
                    "id": "{{ external.id }}"
                }{% if not loop.last %},{% endif %}
                {% endfor %}
            ]
        }{% if not loop.last %},{% endif %}
        {% endfor %}
    ]
}
"""


def test_identities() -> None:
    """Profile 2 has no external_id: iterating the namespace it lacks iterates nothing."""
    profiles = [
        {"identityMap": JOHN_IDENTITIES},
        {"identityMap": {"email": [{"id": "jane.doe@example.com"}]}},
    ]
    output = only_output(IDENTITIES_TEMPLATE, profiles, BATCH)
    assert json.loads(output) == {
        "profiles": [
            {"identities": JOHN_RESULT_IDENTITIES},
            {"identities": [{"type": "email", "id": "jane.doe@example.com"}]},
        ]
    }


# Audiences, identities and attributes together.
COMBINED_TEMPLATE = """\
{
    "profiles": [
        {% for profile in input.profiles %}
        {
            "attributes": {
            {% for attribute in profile.attributes %}
                "{{ attribute.key }}":
                    {% if attribute.value is empty %}
                        null
                    {% else %}
                        "{{ attribute.value.value }}"
                    {% endif %}
                {% if not loop.last %},{% endif %}
            {% endfor %}
            },
            "identities": [
                {% for email in profile.identityMap.email %}
                {
                    "type": "email",
                    "id": "{{ email.id }}"
                }{% if not loop.last %},{% endif %}
                {% endfor %}

                {# Add a comma only if we have both emails and external_ids. #}
                {% if profile.identityMap.email is not empty and profile.identityMap.external_id is not empty %}
                    ,
                {% endif %}

                {% for external in profile.identityMap.external_id %}
                {
                    "type": "external_id",
                    "id": "{{ external.id }}"
                }{% if not loop.last %},{% endif %}
                {% endfor %}
            ],
            "AdobeExperiencePlatformSegments": {
                "add": [
                {% for segment in profile.segmentMembership.ups | added %}
                    "{{ segment.key }}"{% if not loop.last %},{% endif %}
                {% endfor %}
                ],
                "remove": [
                {# Alternative syntax for filtering audiences by status: #}
                {% for segment in removedSegments(profile.segmentMembership.ups) %}
                    "{{ segment.key }}"{% if not loop.last %},{% endif %}
                {% endfor %}
                ]
            }
        }{% if not loop.last %},{% endif %}
        {% endfor %}
    ]
}
"""

HARRY_COMBINED = {
    "attributes": HARRY_ATTRIBUTES,
    "identityMap": {"email": [{"id": "harry.p@example.com"}]},
    "segmentMembership": {
        "ups": {A1: {"lastQualificationTime": "2019-11-20T13:15:49Z", "status": "realized"}}
    },
}
HERMIONE_COMBINED = {
    "attributes": HERMIONE_ATTRIBUTES,
    "identityMap": JOHN_IDENTITIES,
    "segmentMembership": JOHN_MEMBERSHIP,
}
HERMIONE_RESULT = {
    "attributes": {"firstName": "Hermione", "birthDate": None},
    "identities": JOHN_RESULT_IDENTITIES,
    "AdobeExperiencePlatformSegments": {"add": [A1, A2], "remove": [A3]},
}
HARRY_RESULT = {
    "attributes": {"firstName": "Harry", "birthDate": "1980/07/31"},
    "identities": [{"type": "email", "id": "harry.p@example.com"}],
    "AdobeExperiencePlatformSegments": {"add": [A1], "remove": []},
}


def test_audiences_identities_and_attributes() -> None:
    output = only_output(COMBINED_TEMPLATE, [HERMIONE_COMBINED, HARRY_COMBINED], BATCH)
    assert json.loads(output) == {"profiles": [HERMIONE_RESULT, HARRY_RESULT]}


# --- aggregation keys ------------------------------------------------------------------

AUDIENCE_ID_TEMPLATE = """\
{
    "audienceId": "{{ input.aggregationKey.segmentId }}",
    "audienceNamespace": "{{ input.aggregationKey.segmentNamespace }}",
    "profiles": [
        {% for profile in input.profiles %}
        {
            "first_name": "{{ profile.attributes.firstName.value }}"
        }{% if not loop.last %},{% endif %}
        {% endfor %}
    ]
}
"""


def _audience_profiles() -> list[dict[str, Any]]:
    ups = {A2: {"lastQualificationTime": "2020-11-20T13:15:49Z", "status": "realized"}}
    upload = {
        "CustomerAudienceUpload": {
            A3: {"lastQualificationTime": "2021-02-20T12:00:00Z", "status": "realized"}
        }
    }
    profiles = [
        {"attributes": {"firstName": {"value": "Hermione"}}, "segmentMembership": {"ups": ups}},
        {"attributes": {"firstName": {"value": "Harry"}}, "segmentMembership": {"ups": ups}},
        {"attributes": {"firstName": {"value": "Tom"}}, "segmentMembership": upload},
        {
            "attributes": {"firstName": {"value": "Jerry"}},
            "segmentMembership": {"ups": ups, **upload},
        },
    ]
    return profiles


# The documentation's result prints `firstName` although its template writes `first_name`;
# the template is the reference here.
AUDIENCE_ID_RESULT = [
    {
        "audienceId": A2,
        "audienceNamespace": "ups",
        "profiles": [
            {"first_name": "Hermione"},
            {"first_name": "Harry"},
            {"first_name": "Jerry"},
        ],
    },
    {
        "audienceId": A3,
        "audienceNamespace": "CustomerAudienceUpload",
        "profiles": [{"first_name": "Tom"}, {"first_name": "Jerry"}],
    },
]


def test_audience_id_aggregation_key() -> None:
    """Four profiles, two audiences in two namespaces: two groups (Jerry in both)."""
    groups = render_template(AUDIENCE_ID_TEMPLATE, _audience_profiles(), spec=BY_AUDIENCE)
    assert [g["aggregationKey"] for g in groups] == [
        {"segmentId": A2, "segmentNamespace": "ups", "segmentAlias": None},
        {"segmentId": A3, "segmentNamespace": "CustomerAudienceUpload", "segmentAlias": None},
    ]
    assert [json.loads(g["output"]) for g in groups] == AUDIENCE_ID_RESULT


def test_segment_alias_and_status_aggregation_keys() -> None:
    """`customerList={{input.aggregationKey.segmentAlias}}` and the documented `action=` line."""
    template = (
        "customerList={{input.aggregationKey.segmentAlias}}\n"
        'action={% if input.aggregationKey.segmentStatus == "exited" %}REMOVE'
        "{% else %}ADD{% endif%}"
    )
    profiles = [
        {"identityMap": {}, "segmentMembership": membership(seg1="realized", seg2="exited")},
        {"identityMap": {}, "segmentMembership": membership(seg1="exited")},
        {"identityMap": {}, "segmentMembership": membership(seg1="existing")},
    ]
    groups = render_template(
        template, profiles, spec=BY_AUDIENCE_STATUS, aliases={"seg1": "list-1", "seg2": 42}
    )
    assert [(g["aggregationKey"], g["output"]) for g in groups] == [
        (
            {
                "segmentId": "seg1",
                "segmentNamespace": "ups",
                "segmentAlias": "list-1",
                "segmentStatus": "realized",
            },
            "customerList=list-1\naction=ADD",
        ),
        (
            {
                "segmentId": "seg2",
                "segmentNamespace": "ups",
                "segmentAlias": 42,
                "segmentStatus": "exited",
            },
            "customerList=42\naction=REMOVE",
        ),
        (
            {
                "segmentId": "seg1",
                "segmentNamespace": "ups",
                "segmentAlias": "list-1",
                "segmentStatus": "exited",
            },
            "customerList=list-1\naction=REMOVE",
        ),
        (
            {
                "segmentId": "seg1",
                "segmentNamespace": "ups",
                "segmentAlias": "list-1",
                "segmentStatus": "existing",
            },
            "customerList=list-1\naction=ADD",
        ),
    ]


IDENTITY_GROUPS_TEMPLATE = """\
{
            "profiles": [
            {% for profile in input.profiles %}
            {
                {% for ns in input.aggregationKey.identityNamespaces %}
                "{{ns}}": [
                    {% for id in profile.identityMap[ns] %}
                    "{{id.id}}"{% if not loop.last %},{% endif %}
                    {% endfor %}
                ]{% if not loop.last %},{% endif %}
                {% endfor %}
            }{% if not loop.last %},{% endif %}
            {% endfor %}
        ]
}
"""


def test_identity_namespace_aggregation_key() -> None:
    profiles = [
        {
            "identityMap": {
                "email": [{"id": "e1@example.com"}, {"id": "e2@example.com"}],
                "phone": [{"id": "+40744111222"}],
                "IDFA": [{"id": "AEBE52E7-03EE-455A-B3C4-E57283966239"}],
                "GAID": [{"id": "e4fe9bde-caa0-47b6-908d-ffba3fa184f2"}],
            }
        },
        {
            "identityMap": {
                "email": [{"id": "e3@example.com"}],
                "phone": [{"id": "+40744333444"}, {"id": "+40744555666"}],
                "IDFA": [{"id": "134GHU45-34HH-GHJ7-K0H8-LHN665998NN0"}],
                "GAID": [{"id": "47bh00i9-8jv6-334n-lll8-nb7f24sghg76"}],
            }
        },
    ]
    groups = render_template(IDENTITY_GROUPS_TEMPLATE, profiles, spec=BY_IDENTITY)
    assert [g["aggregationKey"] for g in groups] == [
        {"identityNamespaces": ["email", "phone"]},
        {"identityNamespaces": ["GAID", "IDFA"]},
    ]
    assert [json.loads(g["output"]) for g in groups] == [
        {
            "profiles": [
                {"email": ["e1@example.com", "e2@example.com"], "phone": ["+40744111222"]},
                {"email": ["e3@example.com"], "phone": ["+40744333444", "+40744555666"]},
            ]
        },
        {
            "profiles": [
                {
                    "IDFA": ["AEBE52E7-03EE-455A-B3C4-E57283966239"],
                    "GAID": ["e4fe9bde-caa0-47b6-908d-ffba3fa184f2"],
                },
                {
                    "IDFA": ["134GHU45-34HH-GHJ7-K0H8-LHN665998NN0"],
                    "GAID": ["47bh00i9-8jv6-334n-lll8-nb7f24sghg76"],
                },
            ]
        },
    ]


# --- supported-functions.md -----------------------------------------------------------

FUNCTIONS_PROFILE = {
    "identityMap": {"myIdNamespace": [{"id": "external_id1"}, {"id": "external_id2"}]},
    "segmentMembership": {
        "ups": {
            "111111": {"lastQualificationTime": "2019-11-20T13:15:49Z", "status": "realized"},
            "222222": {"lastQualificationTime": "2019-11-20T13:15:49Z", "status": "exited"},
            "333333": {"lastQualificationTime": "2019-11-20T13:15:49Z", "status": "realized"},
        }
    },
}


def test_added_segments_and_removed_segments_functions() -> None:
    # PORT: the documentation's context is the profile itself; here it is input.profile.
    template = (
        "added: {% for s in addedSegments(input.profile.segmentMembership.ups) %}"
        "<{{s.key}}>{% endfor %}; removed: "
        "{% for s in removedSegments(input.profile.segmentMembership.ups) %}"
        "<{{s.key}}>{% endfor %}"
    )
    assert only_output(template, [FUNCTIONS_PROFILE], TEXT) == (
        "added: <111111><333333>; removed: <222222>"
    )


def test_added_and_removed_filters() -> None:
    template = (
        "added: {% for s in input.profile.segmentMembership.ups | added %}<{{s.key}}>"
        "{% endfor %};|removed: {% for s in input.profile.segmentMembership.ups | removed %}"
        "<{{s.key}}>{% endfor %};"
    )
    assert only_output(template, [FUNCTIONS_PROFILE], TEXT) == (
        "added: <111111><333333>;|removed: <222222>;"
    )


def test_has_segments() -> None:
    template = "{% if hasSegments(input.profile.segmentMembership.ups) %}yes{% else %}no{% endif %}"
    profiles = [FUNCTIONS_PROFILE, {"identityMap": {}, "segmentMembership": {"ups": {}}}]
    assert outputs(template, profiles, TEXT) == ["yes", "no"]


def test_added_segments_across_namespaces() -> None:
    """DSDK's reference table: `addedSegments(input.profile.segmentMembership)` returns the
    audiences with status realized across all namespaces; likewise removed, hasSegments."""
    template = (
        "{% for s in addedSegments(input.profile.segmentMembership) %}<{{ s.key }}>{% endfor %}"
        "|{% for s in removedSegments(input.profile.segmentMembership) %}<{{ s.key }}>"
        "{% endfor %}|{% if hasSegments(input.profile.segmentMembership) %}yes{% endif %}"
    )
    profile = {
        "identityMap": {},
        "segmentMembership": {
            "ups": {"u1": {"status": "realized"}, "u2": {"status": "exited"}},
            "CustomerAudienceUpload": {"c1": {"status": "realized"}},
        },
    }
    assert only_output(template, [profile], TEXT) == "<u1><c1>|<u2>|yes"


# --- render-template-api.md -----------------------------------------------------------

RENDER_API_PROFILE = {
    "segmentMembership": {
        "ups": {
            "segmentid1": {
                "lastQualificationTime": "2021-10-26T16:59:00.828461Z",
                "status": "realized",
            },
            "segmentid3": {
                "lastQualificationTime": "2021-10-26T16:59:00.828469Z",
                "status": "exited",
            },
            "segmentid2": {
                "lastQualificationTime": "2021-10-26T16:59:00.828468Z",
                "status": "realized",
            },
        }
    },
    "identityMap": {
        "gaid": [{"id": "gaid-BLAcJ"}],
        "idfa": [{"id": "idfa-Iv5AG"}],
        "email": [{"id": "email-rbN62"}],
    },
    "attributes": {"key": {"value": "string"}},
}

# The documented template, with its \r\n line ends as \n.
SINGLE_PROFILE_TEMPLATE = """\
{#- THIS is an example template for a single profile -#}
{#- A '-' at the beginning or end of a tag removes all whitespace on that side of the tag. -#}
{
    "identities": [
    {%- for idMapEntry in input.profile.identityMap -%}
    {%- set namespace = idMapEntry.key -%}
        {%- for identity in idMapEntry.value %}
        {
            "type": "{{ namespace }}",
            "id": "{{ identity.id }}"
        }{%- if not loop.last -%},{%- endif -%}
        {%- endfor -%}{%- if not loop.last -%},{%- endif -%}
    {% endfor %}
    ],
    "AdobeExperiencePlatformSegments": {
        "add": [
        {%- for segment in input.profile.segmentMembership.ups | added %}
            "{{ segment.key }}"{%- if not loop.last -%},{%- endif -%}
        {% endfor %}
        ],
        "remove": [
        {#- Alternative syntax for filtering audiences by status: -#}
        {% for segment in removedSegments(input.profile.segmentMembership.ups) %}
            "{{ segment.key }}"{%- if not loop.last -%},{%- endif -%}
        {% endfor %}
        ]
    }
}"""

# The documented `output`, with its \r\n line ends as \n: the exact text, whitespace included.
SINGLE_PROFILE_OUTPUT = """\
{
    "identities": [
        {
            "type": "gaid",
            "id": "gaid-BLAcJ"
        },
        {
            "type": "idfa",
            "id": "idfa-Iv5AG"
        },
        {
            "type": "email",
            "id": "email-rbN62"
        }
    ],
    "AdobeExperiencePlatformSegments": {
        "add": [
            "segmentid1",
            "segmentid2"
        ],
        "remove": [
            "segmentid3"
        ]
    }
}"""


def test_render_template_api_single_profile() -> None:
    assert only_output(SINGLE_PROFILE_TEMPLATE, [RENDER_API_PROFILE], SINGLE) == (
        SINGLE_PROFILE_OUTPUT
    )


def test_render_template_api_raw_profiles() -> None:
    """The documented starting template `{% for profile in input.profiles %}{{profile|raw}}
    {% endfor %}` prints each profile as JSON (the documentation's stray trailing `}` left out).
    """
    template = "{% for profile in input.profiles %}{{profile|raw}}{% endfor %}"
    output = only_output(template, [RENDER_API_PROFILE], BATCH)
    assert json.loads(output) == RENDER_API_PROFILE
    assert output == json.dumps(RENDER_API_PROFILE, ensure_ascii=False)


# --- templating-specs.md: Pebble `set` inside loops -----------------------------------

# The documented template, one tag per line. Pebble keeps a `set` made inside a loop;
# Jinja forgets it at the end of the iteration.
PEBBLE_SET_TEMPLATE = """\
{ "attributes": [
{% for ns in ["external_id", "yourdestination_id"] %}
{% if input.profile.identityMap[ns] is not empty and first_namespace_encountered %} , {% endif %}
{% set first_namespace_encountered = true %}
{% for identity in input.profile.identityMap[ns]%}
{ "{{ ns }}": "{{ identity.id }}"
{% if input.profile.segmentMembership.ups is not empty %} , "AEPSegments": { "add": [
{% for segment in input.profile.segmentMembership.ups %}
{% if segment.value.status == "realized" or segment.value.status == "existing" %}
{% if added_segment_found %} , {% endif %}
{% set added_segment_found = true %}
"{{ destination.segmentAliases[segment.key] }}"
{% endif %}
{% endfor %}
], "remove": [
{% for segment in input.profile.segmentMembership.ups %}
{% if segment.value.status == "exited" %}
{% if removed_segment_found %} , {% endif %}
{% set removed_segment_found = true %}
"{{ destination.segmentAliases[segment.key] }}"
{% endif %}
{% endfor %}
] }
{% set removed_segment_found = false %}
{% set added_segment_found = false %}
{% endif %}
{% if input.profile.attributes is not empty %} , {% endif %}
{% for attribute in input.profile.attributes %}
"{{ attribute.key }}": {% if attribute.value is empty %} null {% else %} "{{ attribute.value.value }}" {% endif %}
{% if not loop.last%} , {% endif %}
{% endfor %}
}
{% if not loop.last %} , {% endif %}
{% endfor %}
{% endfor %}
] }
"""

# PORT: the three flags live in a namespace() so that they outlive the loop iteration.
NAMESPACE_TEMPLATE = (
    PEBBLE_SET_TEMPLATE.replace(
        '{ "attributes": [\n',
        "{%- set flags = namespace(first_namespace_encountered=false,"
        " added_segment_found=false, removed_segment_found=false) -%}\n"
        '{ "attributes": [\n',
    )
    .replace("and first_namespace_encountered %}", "and flags.first_namespace_encountered %}")
    .replace("{% set first_namespace_encountered", "{% set flags.first_namespace_encountered")
    .replace("{% if added_segment_found %}", "{% if flags.added_segment_found %}")
    .replace("{% set added_segment_found", "{% set flags.added_segment_found")
    .replace("{% if removed_segment_found %}", "{% if flags.removed_segment_found %}")
    .replace("{% set removed_segment_found", "{% set flags.removed_segment_found")
)

PEBBLE_SET_PROFILE = {
    "identityMap": {
        "external_id": [{"id": "ext-1"}, {"id": "ext-2"}],
        "yourdestination_id": [{"id": "yd-1"}],
    },
    "segmentMembership": membership(s1="realized", s2="existing", s3="exited", s4="exited"),
    "attributes": {"firstName": {"value": "Ada"}, "birthDate": {}},
}
PEBBLE_SET_ALIASES = {"s1": "alias-1", "s2": "alias-2", "s3": "alias-3", "s4": "alias-4"}
SEGMENTS = {"add": ["alias-1", "alias-2"], "remove": ["alias-3", "alias-4"]}
PEBBLE_SET_RESULT = {
    "attributes": [
        {"external_id": "ext-1", "AEPSegments": SEGMENTS, "firstName": "Ada", "birthDate": None},
        {"external_id": "ext-2", "AEPSegments": SEGMENTS, "firstName": "Ada", "birthDate": None},
        {
            "yourdestination_id": "yd-1",
            "AEPSegments": SEGMENTS,
            "firstName": "Ada",
            "birthDate": None,
        },
    ]
}


def test_pebble_set_in_loops_ported_with_namespace() -> None:
    output = only_output(
        NAMESPACE_TEMPLATE, [PEBBLE_SET_PROFILE], SINGLE, aliases=PEBBLE_SET_ALIASES
    )
    assert json.loads(output) == PEBBLE_SET_RESULT


def test_pebble_set_in_loops_unported_loses_the_commas() -> None:
    """Unported, each flag is forgotten at the end of its loop iteration, so the commas
    between list items never come: the output is not JSON. Hence the porting note."""
    output = only_output(
        PEBBLE_SET_TEMPLATE, [PEBBLE_SET_PROFILE], SINGLE, aliases=PEBBLE_SET_ALIASES
    )
    squeezed = " ".join(output.split())
    assert '"add": [ "alias-1" "alias-2" ]' in squeezed
    assert '"remove": [ "alias-3" "alias-4" ]' in squeezed
    assert '"birthDate": null } { "yourdestination_id": "yd-1"' in squeezed
    with pytest.raises(json.JSONDecodeError):
        json.loads(output)


# --- the other helpers of the reference: raw, tojson, base64encode, formUrlEncode, empty


def test_raw_and_tojson_print_json_values() -> None:
    template = (
        '{"name": {{ input.profile.attributes.firstName.value | raw }},'
        ' "attributes": {{ input.profile.attributes | tojson }},'
        ' "ids": {{ input.profile.identityMap.email | raw }}}'
    )
    profile = {
        "identityMap": {"email": [{"id": "a@example.com"}]},
        "attributes": {"firstName": {"value": 'Zoë "</script>"'}, "birthDate": {}},
    }
    output = only_output(template, [profile], SINGLE)
    assert json.loads(output) == {
        "name": 'Zoë "</script>"',
        "attributes": {"firstName": {"value": 'Zoë "</script>"'}, "birthDate": {}},
        "ids": [{"id": "a@example.com"}],
    }


def test_base64encode() -> None:
    template = "Basic {{ 'user:pässword' | base64encode }}|{{ input.profile.attributes.key.value | base64encode }}"
    profile = {"identityMap": {}, "attributes": {"key": {"value": "hello"}}}
    assert only_output(template, [profile], TEXT) == "Basic dXNlcjpww6Rzc3dvcmQ=|aGVsbG8="


def test_form_url_encode() -> None:
    template = (
        "{{ formUrlEncode('grant_type', 'client_credentials', 'scope', customerData.scope,"
        " 'email', input.profile.identityMap.email[0].id, 'note', 'a&b=c d/é') }}"
    )
    profile = {"identityMap": {"email": [{"id": "a+b@example.com"}]}}
    assert only_output(template, [profile], TEXT, customer_data={"scope": "lists.write"}) == (
        "grant_type=client_credentials&scope=lists.write&email=a%2Bb%40example.com"
        "&note=a%26b%3Dc+d%2F%C3%A9"
    )


def test_form_url_encode_needs_pairs() -> None:
    with pytest.raises(RenderError) as raised:
        outputs("{{ formUrlEncode('a', 'b', 'c') }}", [{"identityMap": {}}], TEXT)
    assert str(raised.value) == (
        "<template>:1: formUrlEncode() takes key, value pairs: an even number of arguments"
        " (in `{{ formUrlEncode('a', 'b', 'c') }}`)"
    )


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("input.profile.attributes.birthDate", "empty"),  # {}
        ("input.profile.attributes.birthDate.value", "empty"),  # undefined
        ("input.profile.attributes.lastName.value", "empty"),  # ""
        ("input.profile.attributes.key.value", "empty"),  # null
        ("input.profile.identityMap.idfa", "empty"),  # []
        ("input.profile.identityMap.email", "not empty"),
        ("input.profile.attributes.firstName.value", "not empty"),  # "0"
        ("input.profile.attributes.optedOut.value", "not empty"),  # false
    ],
)
def test_is_empty(expression: str, expected: str) -> None:
    template = f"{{% if {expression} is empty %}}empty{{% else %}}not empty{{% endif %}}|"
    template += f"{{% if {expression} is not empty %}}not empty{{% else %}}empty{{% endif %}}"
    profile = {
        "identityMap": {"email": [{"id": "a@example.com"}], "idfa": []},
        "attributes": {
            "birthDate": {},
            "lastName": {"value": ""},
            "key": {"value": None},
            "firstName": {"value": "0"},
            "optedOut": {"value": False},
        },
    }
    assert only_output(template, [profile], TEXT) == f"{expected}|{expected}"


def test_text_template_prints_json_spelling() -> None:
    """Text bodies print true, not Python's True, and nothing for null (as Pebble does)."""
    template = "optedOut={{ input.profile.attributes.optedOut.value }}&key={{ input.profile.attributes.key.value }}"
    profile = {
        "identityMap": {},
        "attributes": {"optedOut": {"value": True}, "key": {"value": None}},
    }
    assert only_output(template, [profile], TEXT) == "optedOut=true&key="


def test_destination_segment_aliases_and_names() -> None:
    template = (
        "{% for s in input.profile.segmentMembership.ups %}"
        "{{ s.key }}={{ destination.segmentAliases[s.key] }}"
        "/{{ destination.namespaceSegmentAliases['ups'][s.key] }}"
        "/{{ destination.segmentNames[s.key] }};{% endfor %}"
    )
    profile = {"identityMap": {}, "segmentMembership": membership(a="realized", b="exited")}
    assert only_output(template, [profile], TEXT, aliases={"a": 7, "b": "list-b"}) == (
        "a=7/7/a;b=list-b/list-b/b;"
    )


def test_target_profile_without_segment_membership_by_audience() -> None:
    assert render_template("{}", [{"identityMap": {}}], spec=BY_AUDIENCE) == []


# --- the ported templates pass `validate`'s static name check ---------------------------


@pytest.mark.parametrize(
    ("spec", "template"),
    [
        (SINGLE, SINGLE_PROFILE_TEMPLATE),
        (SINGLE, NAMESPACE_TEMPLATE),
        (BATCH, ATTRIBUTES_TEMPLATE),
        (BATCH, MEMBERSHIP_TEMPLATE),
        (BATCH, IDENTITIES_TEMPLATE),
        (BATCH, COMBINED_TEMPLATE),
        (BY_AUDIENCE, AUDIENCE_ID_TEMPLATE),
        (BY_IDENTITY, IDENTITY_GROUPS_TEMPLATE),
    ],
    ids=[
        "single-profile",
        "pebble-set-ported",
        "attributes",
        "membership",
        "identities",
        "combined",
        "audience-id",
        "identity-groups",
    ],
)
def test_ported_templates_pass_the_static_name_check(spec: str, template: str) -> None:
    source = TemplateSource(template, "JINJA", "<template>", "", "body")
    assert check_names(load_spec(spec), source) == []


def test_static_name_check_catches_a_typo_in_a_ported_template() -> None:
    source = TemplateSource(
        ATTRIBUTES_TEMPLATE.replace("profile.attributes", "profile.atributes"),
        "JINJA",
        "<template>",
        "",
        "body",
    )
    problems = check_names(load_spec(BATCH), source)
    assert [line for line, _ in problems] == [5]
    assert "atributes" in problems[0][1]


# --- render_template's errors: RenderError or ValueError, never Jinja's own --------------


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{ x", "<template>:1: template syntax error: unexpected end of template, expected"),
        ("a\n{{ ''.__class__ }}", "<template>:2: access to attribute '__class__' of 'str'"),
        (
            "{{ destination.segmentAliases['a'] }}",
            "<template>:1: 'engine.templating.Map object' has no attribute 'a'"
            " (in `{{ destination.segmentAliases['a'] }}`)",
        ),
    ],
    ids=["syntax", "sandbox", "no-alias"],
)
def test_render_template_errors_are_render_errors(template: str, message: str) -> None:
    with pytest.raises(RenderError) as raised:
        render_template(template, [{"identityMap": {}}], spec=SINGLE)
    assert str(raised.value).startswith(message)


@pytest.mark.parametrize(
    ("template", "message"),
    [
        (
            "{{ 'ab' * 500001 }}",
            "<template>:1: `*` would make 1,000,002 characters or items (at most 1,000,000)",
        ),
        (
            "{{ 3000000 * [0] }}",
            "<template>:1: `*` would make 3,000,000 characters or items (at most 1,000,000)",
        ),
        ("{{ 2 ** 100000 }}", "<template>:1: `**` would make an integer of over 10,000 bits"),
    ],
)
def test_templates_cannot_build_huge_values(template: str, message: str) -> None:
    with pytest.raises(RenderError) as raised:
        render_template(template, [{"identityMap": {}}], spec=SINGLE)
    assert str(raised.value) == f"{message} (in `{template}`)"


def test_templates_can_still_multiply() -> None:
    template = (
        "{{ ('ab' * 500000) | length }} {{ [0] * 3 }} {{ 2 ** 64 }} {{ 1.5 * 4 }} {{ 3 * 'x' }}"
    )
    output = only_output(template, [{"identityMap": {}}], TEXT)
    assert output == "1000000 [0, 0, 0] 18446744073709551616 6.0 xxx"


@pytest.mark.parametrize(
    ("profiles", "message"),
    [
        ({"identityMap": {}}, "give a list of target profiles, not an object"),
        ([{}, 3], "item 2: not a JSON object but a number"),
        ([{"attributes": {"a": 1}}], 'item 1: attributes.a is not {"value": ...}'),
    ],
)
def test_render_template_bad_profiles_are_value_errors(profiles: Any, message: str) -> None:
    with pytest.raises(ValueError) as raised:
        render_template("{}", profiles, spec=SINGLE)
    assert str(raised.value) == message
