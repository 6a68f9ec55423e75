"""What can go wrong in a scrape, sorted by what to do about it."""

from __future__ import annotations


class ScrapeError(Exception):
    """Base of every scrape failure. `transient`: trying again may help. `portal_answer`: the
    portal answered (an error page, a "não encontrada", a login form) through a browser that
    works, so the browser goes back to the pool instead of being replaced."""

    transient = True
    portal_answer = False
    code = "scrape_failed"


class OSNotFound(ScrapeError):
    """The portal says the OS does not exist: final, never retried."""

    transient = False
    portal_answer = True
    code = "not_found"


class PortalError(ScrapeError):
    """The portal answered with an error or with something that is not an OS record."""

    portal_answer = True
    code = "portal_error"


class SessionExpired(ScrapeError):
    """The portal asked for a login again (handled inside the flow by logging in)."""

    portal_answer = True
    code = "session_expired"


class LoginFailed(ScrapeError):
    """The portal refused the configured credentials: retrying won't fix them."""

    transient = False
    portal_answer = True
    code = "login_failed"


class SoftTimeLimit(ScrapeError):
    """The job's soft time limit passed; the flow stopped between two steps."""

    code = "soft_time_limit"


class HardTimeLimit(ScrapeError):
    """The job's hard time limit passed; the browser's whole process tree was killed."""

    code = "hard_time_limit"


class BrowserFailure(ScrapeError):
    """The browser or chromedriver failed (crashed, killed, unreachable)."""

    code = "browser_failure"


class DatabaseUnavailable(ScrapeError):
    """The OS was scraped but could not be recorded: the database refused, dropped or did not
    answer, or held a lock too long. Tried again later, as the portal's own failures are."""

    code = "database_unavailable"
