"""Sign-in, sessions and the role check, over real HTTP (uvicorn on loopback)."""

from __future__ import annotations

import requests
from console_world import PASSWORD, Served, csrf_of


def test_a_page_without_a_session_sends_to_sign_in(served: Served) -> None:
    r = requests.get(f"{served.url}/", allow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login")


def test_sign_in_then_the_dashboard_lists_every_job(served: Served) -> None:
    s = served.session("audrey")
    page = s.get(f"{served.url}/")
    assert page.status_code == 200
    for job in served.runtime.config.jobs:
        assert job in page.text
    cookie = next(c for c in s.cookies if c.name == "crmbridge_session")
    assert cookie.has_nonstandard_attr("HttpOnly") or "httponly" in str(cookie._rest).lower()


def test_a_wrong_password_is_refused_without_saying_which_part_was_wrong(served: Served) -> None:
    s = requests.Session()
    token = csrf_of(s.get(f"{served.url}/login").text)
    r = s.post(f"{served.url}/login", data={"username": "audrey", "password": PASSWORD + "x", "csrf_token": token})
    assert r.status_code == 401 and "Wrong user name or password" in r.text
    token = csrf_of(r.text)
    r = s.post(f"{served.url}/login", data={"username": "nobody", "password": PASSWORD, "csrf_token": token})
    assert r.status_code == 401 and "Wrong user name or password" in r.text


def test_sign_in_without_its_csrf_token_is_refused(served: Served) -> None:
    r = requests.post(f"{served.url}/login", data={"username": "audrey", "password": PASSWORD})
    assert r.status_code == 403


def test_sign_out_needs_the_csrf_token_and_ends_the_session(served: Served) -> None:
    s = served.session("oscar")
    assert s.post(f"{served.url}/logout", data={}, allow_redirects=False).status_code == 403
    token = csrf_of(s.get(f"{served.url}/").text)
    assert s.post(f"{served.url}/logout", data={"csrf_token": token}, allow_redirects=False).status_code == 303
    assert s.get(f"{served.url}/", allow_redirects=False).status_code == 303
