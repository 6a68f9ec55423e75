"""`python -m esteira_scraper_worker`: one worker process, as its container image runs it."""

from esteira_scraper_worker.main import main

if __name__ == "__main__":
    main()
