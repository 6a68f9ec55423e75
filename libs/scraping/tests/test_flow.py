"""The scrape flow in a real headless Chromium against the demo portal, every way a profile
can type and submit the search; and what a profile may say."""

from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from esteira_portal import records
from esteira_scraping.errors import OSNotFound
from esteira_scraping.flow import Deadline, ScrapeFlow
from esteira_scraping.profile import PortalCredentials, PortalProfile, ProfileSettings, load_profile
from esteira_testing.plugin import DEMO_PORTAL_PASSWORD, DEMO_PORTAL_USERNAME


def _no_progress(_stage: str, _percent: int) -> None:
    return None


@pytest.mark.integration
@pytest.mark.parametrize("typing", ["insert", "keys"])
@pytest.mark.parametrize("submit_with_enter", [True, False])
def test_every_way_of_typing_and_submitting_reads_the_record(
    chromium, demo_portal: str, typing: str, submit_with_enter: bool
) -> None:
    profile = PortalProfile(
        base_url=demo_portal, typing=typing, submit_with_enter=submit_with_enter
    )
    credentials = PortalCredentials(
        username=DEMO_PORTAL_USERNAME, password=SecretStr(DEMO_PORTAL_PASSWORD)
    )
    flow = ScrapeFlow(profile, credentials)
    driver = chromium.driver
    # Several numbers in one page: each search must replace the number the last one left.
    for numero_os in (records.FIRST_OS, records.FIRST_OS + 7, records.FIRST_OS + 123):
        scraped = flow.lookup(driver, str(numero_os), Deadline(60), _no_progress)
        assert scraped.fields["numero_os"] == str(numero_os)
        assert scraped.fields["cliente"]
        assert ("OS", str(numero_os)) in scraped.raw
    with pytest.raises(OSNotFound):
        flow.lookup(driver, "999", Deadline(60), _no_progress)
    scraped = flow.lookup(driver, str(records.FIRST_OS + 1), Deadline(60), _no_progress)
    assert scraped.fields["numero_os"] == str(records.FIRST_OS + 1)


def test_a_profile_with_a_link_text_locator_is_refused_with_the_field_named(
    tmp_path: Path,
) -> None:
    profile_file = tmp_path / "portal.yaml"
    profile_file.write_text("locators:\n  submit: [link text, Entrar]\n", encoding="utf-8")
    with pytest.raises(ValidationError, match=r"locators\.submit"):
        load_profile(ProfileSettings(portal_profile=profile_file))
    with pytest.raises(ValidationError, match="typing"):
        PortalProfile(typing="paste")  # type: ignore[arg-type]
