"""Tier 1: the HTTP layer in-process (Flask test client) over a real TaskService whose worker is not started,
so every accepted task stays waiting and every answer comes straight from the API and the store."""

from __future__ import annotations

import pytest


def generate(client, **body):
    return client.post("/api/generate", json={"prompt": "a lighthouse", **body})


def test_generate_answers_with_the_original_fields_and_the_actual_parameters(client):
    response = generate(client, seed="1725311496", width=1000, height=360, steps=3, format="png", quality=90)
    assert response.status_code == 200
    body = response.get_json()
    assert set(body) >= {"task_id", "task_length", "expected_time_seconds"}
    assert body["seed"] == 1725311496
    assert (body["width"], body["height"]) == (992, 352)  # rounded down to multiples of 16, as mflux does
    assert body["expected_time_seconds"] > 0
    assert body["task_length"] == 0


def test_defaults_come_from_the_engine(client):
    body = generate(client).get_json()
    assert (body["width"], body["height"], body["steps"], body["guidance"]) == (1024, 1024, 4, 3.5)
    assert 0 <= body["seed"] < 2**32


def test_the_original_web_ui_body_is_accepted(client):
    """The original UI sends init_image null, guidance and sizes that are multiples of 8 only."""
    body = {"prompt": "x", "seed": "", "width": 200, "height": 1080, "steps": 4, "guidance": 3.5,
            "format": "JPEG", "quality": 85, "priority": False, "init_image": None}  # fmt: skip
    response = client.post("/api/generate", json=body)
    assert response.status_code == 200, response.get_json()
    assert (response.get_json()["width"], response.get_json()["height"]) == (192, 1072)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"prompt": ""}, "prompt"),
        ({"prompt": "   "}, "prompt"),
        ({"prompt": "x" * 4001}, "prompt"),
        ({"width": 4096}, "width"),
        ({"height": 32}, "height"),
        ({"width": "wide"}, "width"),
        ({"width": 512.5}, "width"),
        ({"steps": 0}, "steps"),
        ({"steps": 101}, "steps"),
        ({"steps": "many"}, "steps"),
        ({"seed": -5}, "seed"),
        ({"seed": 2**40}, "seed"),
        ({"seed": "12abc"}, "seed"),
        ({"seed": True}, "seed"),
        ({"format": "GIF"}, "format"),
        ({"quality": 0}, "quality"),
        ({"quality": 101}, "quality"),
        ({"priority": "perhaps"}, "priority"),
        ({"guidance": -1}, "guidance"),
        ({"init_image": "data:image/png;base64,AAAA"}, "init_image"),
    ],
)
def test_invalid_fields_are_refused_with_a_message_naming_the_field(client, body, field):
    response = client.post("/api/generate", json={"prompt": "a lighthouse", **body})
    assert response.status_code == 422
    error = response.get_json()
    assert error["code"] == 422
    assert error["message"].startswith(f"{field}:"), error
    assert field in error["errors"]["json"]


def test_missing_prompt_is_named(client):
    response = client.post("/api/generate", json={"width": 512})
    assert response.status_code == 422
    assert "prompt" in response.get_json()["message"]


def test_malformed_json_is_a_clear_400(client):
    response = client.post("/api/generate", data='{"prompt": ', content_type="application/json")
    assert response.status_code == 400
    assert "JSON" in response.get_json()["message"]


def test_json_sent_without_a_json_content_type_is_understood(client):
    """`curl -d '{...}'` sends application/x-www-form-urlencoded."""
    response = client.post(
        "/api/generate", data='{"prompt": "from curl"}', content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 200


def test_a_json_body_that_is_not_an_object_is_refused(client):
    response = client.post("/api/generate", json=["prompt"])
    assert response.status_code == 422
    assert response.get_json()["message"]


def test_oversized_bodies_are_refused_with_413(client, service):
    """256 kB where no image is taken; where images are, room for as many as the limits allow, and no more."""
    response = client.post("/api/load", json={"model": "x" * 300_000})
    assert response.status_code == 413
    assert response.get_json()["code"] == 413
    allowed = service.limits.max_body_bytes
    assert client.post("/api/generate", json={"prompt": "x" * 300_000}).status_code == 422  # the prompt's limit
    too_big = client.post("/api/generate", data=b"{" + b" " * allowed + b"}", content_type="application/json")
    assert too_big.status_code == 413 and too_big.get_json()["code"] == 413


def test_format_is_case_insensitive(client, service):
    task_id = generate(client, format="webp").get_json()["task_id"]
    assert service.task(task_id).output.format.value == "WEBP"


def test_status_of_unknown_and_malformed_ids_is_404_json(client):
    for task_id in ("0123456789abcdef", "../../etc/passwd", "x" * 64):
        response = client.get("/api/status", query_string={"task_id": task_id})
        assert response.status_code == 404
        assert "task_id" in response.get_json()["message"]
    response = client.get("/api/status")
    assert response.status_code == 422
    assert response.get_json()["message"].startswith("task_id:")


def test_image_of_a_waiting_task_is_404_saying_so(client):
    task_id = generate(client).get_json()["task_id"]
    response = client.get("/api/image", query_string={"task_id": task_id})
    assert response.status_code == 404
    body = response.get_json()
    assert body["task_status"] == "waiting"
    assert "waiting" in body["message"]


def test_priority_tasks_go_ahead_of_normal_ones_fifo_among_themselves(client):
    normal = [generate(client).get_json()["task_id"] for _ in range(3)]
    first_priority = generate(client, priority=True).get_json()
    second_priority = generate(client, priority=True).get_json()
    assert first_priority["task_length"] == 0
    assert second_priority["task_length"] == 1
    listed = client.get("/api/tasks").get_json()
    assert [t["task_id"] for t in listed] == [first_priority["task_id"], second_priority["task_id"], *normal]
    assert [t["pos"] for t in listed] == [0, 1, 2, 3, 4]
    etas = [t["wait_remaining"] for t in listed]
    assert etas == sorted(etas)


def test_tasks_is_a_plain_array_with_pagination(client):
    ids = [generate(client, prompt=f"p{i}").get_json()["task_id"] for i in range(5)]
    response = client.get("/api/tasks", query_string={"limit": 2, "offset": 2})
    assert response.headers["X-Total-Count"] == "5"
    page = response.get_json()
    assert [t["task_id"] for t in page] == ids[2:4]
    assert [t["pos"] for t in page] == [2, 3]
    full = client.get("/api/tasks").get_json()
    assert [t["wait_remaining"] for t in full][2:4] == [t["wait_remaining"] for t in page]
    assert page[0]["prompt"] == "p2" and page[0]["demo"] is True and page[0]["start_time"] > 0


def test_cancel_and_clear_with_get_and_delete(client):
    first, second, third = (generate(client).get_json()["task_id"] for _ in range(3))
    response = client.get("/api/cancel", query_string={"task_id": first})
    assert response.get_json() == {
        "task_id": first,
        "status": "cancelled",
        "previous_status": "waiting",
        "cancelled": True,
    }
    assert client.delete("/api/cancel", query_string={"task_id": second}).get_json()["cancelled"] is True
    again = client.get("/api/cancel", query_string={"task_id": first}).get_json()
    assert again["cancelled"] is False
    assert client.get("/api/status", query_string={"task_id": third}).get_json()["pos"] == 0
    assert client.get("/api/clear").get_json()["task_ids"] == [third]
    assert client.delete("/api/clear").get_json()["cancelled"] == 0
    assert client.get("/api/cancel", query_string={"task_id": "ffffffffffffffff"}).status_code == 404


def test_openapi_document_and_swagger_ui_are_served(client):
    spec = client.get("/openapi.json").get_json()
    assert {"/api/generate", "/api/status", "/api/image", "/api/tasks", "/api/cancel", "/api/clear"} <= set(
        spec["paths"]
    )
    swagger = client.get("/swagger")
    assert swagger.status_code == 200
    assert b"swagger-ui" in swagger.data
    assert client.get("/swagger-assets/swagger-ui-bundle.js").status_code == 200


def test_cors_allows_any_origin_by_default(client):
    response = client.get("/api/info", headers={"Origin": "http://elsewhere.example"})
    assert response.headers["Access-Control-Allow-Origin"] in ("*", "http://elsewhere.example")


def test_unknown_routes_and_methods_answer_json(client):
    assert client.get("/api/nope").get_json()["code"] == 404
    response = client.put("/api/generate", json={})
    assert response.status_code == 405
    assert response.get_json()["message"]
