"""The Mailjet-compatible statistics endpoints, fed by real sends and tracking hits."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from engagement_support import Stack, links_in, make_stack, pixel_in

BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0"
HTML = (
    '<html><body><a href="https://shop.example/a">A</a> <a href="https://shop.example/b">B</a></body></html>'
)


@pytest.fixture
def stack(tmp_path: Path, db_url: str) -> Any:
    with make_stack(tmp_path, db_url) as running:
        yield running


def aggregate(stack: Stack) -> None:
    stack.flush_tracking()
    stack.node.aggregator.catch_up()


def local(url: str) -> str:
    return url.removeprefix("https://track.example.com")


def campaign_traffic(stack: Stack) -> list[int]:
    ids = stack.send(
        To=[{"Email": "ana@gmail.com"}, {"Email": "bo@outlook.com"}, {"Email": "cy@yahoo.fr"}],
        CustomCampaign="spring",
        HTMLPart=HTML,
    )
    stack.send(To=[{"Email": "dee@gmail.com"}], HTMLPart=HTML)  # another message, no campaign
    assert stack.deliver() == 4
    ana = stack.html_of(ids[0])
    pixel = pixel_in(ana)
    assert pixel is not None
    for _ in range(2):
        stack.client.get(local(pixel), headers={"User-Agent": BROWSER})
    stack.client.get(local(links_in(ana)[1]), headers={"User-Agent": BROWSER}, follow_redirects=False)
    bo_pixel = pixel_in(stack.html_of(ids[1]))
    assert bo_pixel is not None
    stack.client.get(local(bo_pixel), headers={"User-Agent": "Mozilla/5.0"})  # Apple's proxy
    aggregate(stack)
    return ids


def statcounters(stack: Stack, **params: Any) -> Any:
    response = stack.client.get("/v3/REST/statcounters", params=params, auth=stack.auth)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["Count"] == len(body["Data"]) == body["Total"]
    return body["Data"]


def test_campaign_lifetime_counters(stack: Stack) -> None:
    campaign_traffic(stack)
    (entry,) = statcounters(
        stack,
        SourceId="spring",
        CounterSource="Campaign",
        CounterTiming="Message",
        CounterResolution="Lifetime",
    )
    assert entry["SourceID"] == "spring" and entry["Timeslice"] == ""
    assert entry["Total"] == 3
    assert entry["MessageSentCount"] == 3  # sandbox: the outbox accepted them
    assert entry["MessageOpenedCount"] == 1 and entry["EventOpenedCount"] == 2
    assert entry["MessageMachineOpenedCount"] == 1  # Apple's prefetch is not a reader
    assert entry["MessageClickedCount"] == 1 and entry["EventClickedCount"] == 1
    assert entry["OpenRate"] == round(1 / 3, 4) and entry["ClickThroughRate"] == 1.0
    assert entry["MessageQueuedCount"] == 0
    (account,) = statcounters(
        stack, CounterSource="APIKey", CounterTiming="Message", CounterResolution="Lifetime"
    )
    assert account["Total"] == 4 and account["MessageOpenedCount"] == 1


def test_daily_and_hourly_series(stack: Stack) -> None:
    campaign_traffic(stack)
    now = int(time.time())
    today = now // 86_400 * 86_400
    days = statcounters(
        stack,
        SourceId="spring",
        CounterSource="Campaign",
        CounterTiming="Event",
        CounterResolution="Day",
        FromTS=today - 86_400,
        ToTS=today + 86_400,
    )
    assert [d["Timeslice"][:10] for d in days] == [
        time.strftime("%Y-%m-%d", time.gmtime(today - 86_400)),
        time.strftime("%Y-%m-%d", time.gmtime(today)),
    ]
    assert [d["EventOpenedCount"] for d in days] == [0, 2]
    hour = now // 3600 * 3600
    hours = statcounters(
        stack,
        CounterSource="APIKey",
        CounterTiming="Event",
        CounterResolution="Hour",
        FromTS=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(hour - 3600)),
        ToTS=hour + 3600,
    )
    assert len(hours) == 2 and hours[1]["Total"] == 4


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        ({"CounterTiming": "Message", "CounterResolution": "Lifetime"}, "CounterSource is required"),
        ({"CounterSource": "List", "CounterTiming": "Message", "CounterResolution": "Lifetime"}, "List"),
        (
            {"CounterSource": "Campaign", "CounterTiming": "Message", "CounterResolution": "Lifetime"},
            "SourceId",
        ),
        (
            {"CounterSource": "APIKey", "CounterTiming": "Soon", "CounterResolution": "Lifetime"},
            "CounterTiming",
        ),
        (
            {"CounterSource": "APIKey", "CounterTiming": "Event", "CounterResolution": "Day"},
            "FromTS and ToTS",
        ),
        (
            {"CounterSource": "APIKey", "CounterTiming": "Event", "CounterResolution": "5Minutes"},
            "not supported",
        ),
        (
            {
                "CounterSource": "APIKey",
                "CounterTiming": "Event",
                "CounterResolution": "Hour",
                "FromTS": 0,
                "ToTS": 9_000_000,
            },
            "too long",
        ),
        (
            {
                "CounterSource": "APIKey",
                "CounterTiming": "Event",
                "CounterResolution": "Day",
                "FromTS": "soon",
                "ToTS": 5,
            },
            "FromTS",
        ),
        (
            {
                "CounterSource": "APIKey",
                "CounterTiming": "Event",
                "CounterResolution": "Day",
                "FromTS": 9,
                "ToTS": 5,
            },
            "after FromTS",
        ),
        (
            {
                "CounterSource": "APIKey",
                "SourceId": "99999",
                "CounterTiming": "Message",
                "CounterResolution": "Lifetime",
            },
            "your own API key",
        ),
    ],
)
def test_bad_parameters_are_explained(stack: Stack, params: dict[str, Any], problem: str) -> None:
    response = stack.client.get("/v3/REST/statcounters", params=params, auth=stack.auth)
    assert response.status_code == 400
    assert problem in response.json()["ErrorMessage"]


def test_statistics_need_credentials(stack: Stack) -> None:
    for path in (
        "/v3/REST/statcounters",
        "/v3/REST/statistics/recipient-esp",
        "/v3/REST/statistics/link-click",
    ):
        assert stack.client.get(path).status_code == 401
        assert stack.client.get(path, auth=(stack.api_key, "wrong")).status_code == 401


def test_recipient_esp_and_link_click(stack: Stack) -> None:
    campaign_traffic(stack)
    response = stack.client.get(
        "/v3/REST/statistics/recipient-esp", params={"CampaignId": "spring"}, auth=stack.auth
    )
    assert response.status_code == 200
    rows = {row["ESPName"]: row for row in response.json()["Data"]}
    assert list(rows) == ["google", "microsoft", "yahoo", "other"]
    assert rows["google"]["AttemptedMessagesCount"] == 1 and rows["google"]["OpenedMessagesCount"] == 1
    assert rows["google"]["OpenRate"] == 1.0 and rows["google"]["ClickThroughRate"] == 1.0
    assert (
        rows["microsoft"]["OpenedMessagesCount"] == 0 and rows["microsoft"]["MachineOpenedMessagesCount"] == 1
    )
    assert rows["yahoo"]["DeliveredMessagesCount"] == 1 and rows["other"]["AttemptedMessagesCount"] == 0
    everything = stack.client.get("/v3/REST/statistics/recipient-esp", auth=stack.auth).json()["Data"]
    assert {r["ESPName"]: r["AttemptedMessagesCount"] for r in everything}["google"] == 2
    links = stack.client.get(
        "/v3/REST/statistics/link-click", params={"CampaignId": "spring"}, auth=stack.auth
    )
    assert links.json()["Data"] == [
        {
            "URL": "https://shop.example/b",
            "PositionIndex": 2,
            "ClickedMessagesCount": 1,
            "ClickedEventsCount": 1,
        }
    ]


def test_an_event_recorded_twice_is_counted_once(stack: Stack) -> None:
    (message_id,) = stack.send(HTMLPart=HTML, CustomCampaign="dup")
    stack.deliver()
    body = {"MessageID": message_id, "Name": "purchase", "EventID": "order-9"}
    for _ in range(3):
        assert stack.client.post("/api/v1/conversions", json=body, auth=stack.auth).status_code == 201
    aggregate(stack)
    (entry,) = statcounters(
        stack, SourceId="dup", CounterSource="Campaign", CounterTiming="Message", CounterResolution="Lifetime"
    )
    assert entry["MessageConvertedCount"] == 1 and entry["EventConversionCount"] == 1
