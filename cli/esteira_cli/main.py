"""`esteira`: one command that runs every Esteira process locally."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from esteira_core.logging import configure_logging
from esteira_core.settings import CoreSettings

if TYPE_CHECKING:
    from sqlalchemy import Engine


def _api(args: argparse.Namespace) -> int:
    from esteira_api.__main__ import serve

    serve(args.host, args.port, args.workers)
    return 0


def _worker(args: argparse.Namespace) -> int:
    if args.pool == "ruptura":
        from esteira_ruptura_worker.main import main as run_ruptura

        run_ruptura()
    else:
        from esteira_scraper_worker.main import main as run_scraper

        run_scraper()
    return 0


def _portal(args: argparse.Namespace) -> int:
    import uvicorn

    from esteira_portal.settings import PortalSettings

    settings = PortalSettings()
    configure_logging(settings.log_level, settings.log_format)
    uvicorn.run(
        "esteira_portal.app:create_app",
        factory=True,
        host=args.host or settings.host,
        port=args.port or settings.port,
        log_config=None,
        access_log=False,
        # A lookup told to hang never ends by itself: stopping waits this long for it, not
        # for a SIGKILL.
        timeout_graceful_shutdown=2,
    )
    return 0


def _db_upgrade(_args: argparse.Namespace) -> int:
    from esteira_core.db.migrate import upgrade_configured

    upgrade_configured(log_format="text")
    return 0


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _open_migrated_database(command: str) -> Engine | None:
    """The configured database's engine, or None (after saying why on stderr) when it does not
    exist, cannot be reached or has not been migrated. A missing SQLite file is not created."""
    from pathlib import Path

    from pydantic import ValidationError
    from sqlalchemy import inspect
    from sqlalchemy.exc import SQLAlchemyError

    from esteira_core.db import create_db_engine, database_url
    from esteira_core.db.schema import all_tables

    try:
        url = database_url(CoreSettings())
    except (ValidationError, SQLAlchemyError) as exc:
        sys.stderr.write(f"esteira {command}: the configuration is not valid: {exc}\n")
        return None
    shown = url.render_as_string(hide_password=True)
    upgrade_first = (
        "run `esteira db upgrade` with the same ESTEIRA_DATABASE_URL first, or point "
        "ESTEIRA_DATABASE_URL at the database to use"
    )
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        path = Path(str(url.database))
        if not path.is_file():
            relative = "" if path.is_absolute() else ", a path taken from the current folder"
            sys.stderr.write(
                f"esteira {command}: there is no database at {path.resolve()} "
                f"(ESTEIRA_DATABASE_URL={shown}{relative}); {upgrade_first}\n"
            )
            return None
    try:
        engine = create_db_engine(url)
    except SQLAlchemyError as exc:  # e.g. an unknown driver
        sys.stderr.write(f"esteira {command}: cannot use the database {shown}: {exc}\n")
        return None
    try:
        with engine.connect() as connection:
            tables = set(inspect(connection).get_table_names())
    except SQLAlchemyError as exc:
        engine.dispose()
        sys.stderr.write(
            f"esteira {command}: cannot open the database {shown}: {_first_line(exc)}\n"
        )
        return None
    missing = sorted(set(all_tables().tables) - tables)
    if missing:
        engine.dispose()
        sys.stderr.write(
            f"esteira {command}: the database {shown} has not been migrated "
            f"(missing tables: {', '.join(missing)}); {upgrade_first}\n"
        )
        return None
    return engine


def _seed_demo(args: argparse.Namespace) -> int:
    from esteira_ruptura.demo import CarteiraNotEmptyError, DemoSpec, seed_demo

    engine = _open_migrated_database("seed-demo")
    if engine is None:
        return 1
    configure_logging(CoreSettings().log_level, "text")
    try:
        spec = DemoSpec(orders=args.orders, products=args.products, seed=args.seed, horizon_days=28)
        counts = seed_demo(engine, spec, replace=args.replace, if_empty=args.if_empty)
    except CarteiraNotEmptyError as exc:
        sys.stderr.write(f"esteira seed-demo: {exc}\n")
        return 1
    finally:
        engine.dispose()
    sys.stdout.write(
        "seeded: " + ", ".join(f"{table}={count}" for table, count in counts.items()) + "\n"
    )
    return 0


PROBLEMS_SHOWN = 50


def _warn_if_read_elsewhere() -> None:
    """A load into Esteira's tables changes no answer while the ruptura workers read a team's
    database through a source profile: say so (the load still happens: the tables may be
    switched to later)."""
    from pydantic import ValidationError

    from esteira_ruptura.settings import RupturaSettings

    try:
        profile = RupturaSettings().ruptura_source_profile
    except ValidationError:
        return  # the workers refuse that configuration and say why themselves
    if profile is not None:
        sys.stderr.write(
            f"esteira load-csv: warning: ESTEIRA_RUPTURA_SOURCE_PROFILE is set ({profile.name}): "
            "ruptura reads the carteira from that database, not from the tables loaded here\n"
        )


def _load_csv(args: argparse.Namespace) -> int:
    from pathlib import Path

    from sqlalchemy.exc import SQLAlchemyError

    from esteira_ruptura.csv_import import CsvRejected, load

    files = {
        kind: Path(path)
        for kind, path in (
            ("carteira", args.carteira),
            ("estoque", args.estoque),
            ("producao", args.producao),
            ("saidas", args.saidas),
        )
        if path
    }
    if not files:
        sys.stderr.write("esteira load-csv: name at least one file (see --help)\n")
        return 2
    engine = _open_migrated_database("load-csv")
    if engine is None:
        return 1
    _warn_if_read_elsewhere()
    try:
        counts = load(
            engine,
            files,
            encoding=args.encoding,
            decimal=args.decimal,
            allow_empty=args.allow_empty,
        )
    except CsvRejected as rejected:
        for problem in rejected.problems[:PROBLEMS_SHOWN]:
            sys.stderr.write(problem + "\n")
        if len(rejected.problems) > PROBLEMS_SHOWN:
            sys.stderr.write(f"... and {len(rejected.problems) - PROBLEMS_SHOWN} more\n")
        sys.stderr.write(f"esteira load-csv: {rejected}\n")
        return 1
    except SQLAlchemyError as exc:  # the transaction was rolled back
        sys.stderr.write(
            f"esteira load-csv: the database refused the load: {_first_line(exc)}; "
            "nothing was loaded\n"
        )
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("esteira load-csv: interrupted; nothing was loaded\n")
        return 130
    except Exception as exc:  # a bug of ours: still one line, and the transaction rolled back
        sys.stderr.write(
            f"esteira load-csv: failed ({type(exc).__name__}: {exc}); nothing was loaded\n"
        )
        return 1
    finally:
        engine.dispose()
    sys.stdout.write("loaded: " + ", ".join(f"{k}={v}" for k, v in counts.items()) + "\n")
    return 0


def _api_key(args: argparse.Namespace) -> int:
    from esteira_api import apikeys

    if not apikeys.TENANT_PATTERN.match(args.tenant):
        sys.stderr.write("the tenant must be 1-63 of a-z, 0-9, '_', '.', '-'\n")
        return 2
    key = apikeys.generate_key()
    sys.stdout.write(
        f"key (give it to {args.tenant}; it is not stored anywhere): {key}\n"
        f"entry for ESTEIRA_API_KEYS: {args.tenant}:{apikeys.key_digest(key)}\n"
    )
    return 0


def _up(args: argparse.Namespace) -> int:
    from esteira_cli.stack import StackConfig, run_stack

    return run_stack(
        StackConfig(
            api_port=args.api_port,
            portal_port=args.portal_port,
            redis_port=args.redis_port,
            data_dir=args.data_dir,
            demo_orders=args.demo_orders,
            ruptura_metrics_port=args.ruptura_metrics_port,
            scraper_metrics_port=args.scraper_metrics_port,
        )
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="esteira", description="Run Esteira's processes locally.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    api = commands.add_parser("api", help="run the gateway (FastAPI on uvicorn)")
    api.add_argument("--host", help="listen address (default: ESTEIRA_API_HOST)")
    api.add_argument("--port", type=int, help="listen port (default: ESTEIRA_API_PORT)")
    api.add_argument("--workers", type=int, help="uvicorn processes (default: ESTEIRA_API_WORKERS)")
    api.set_defaults(handler=_api)

    worker = commands.add_parser("worker", help="run one worker process of a pool")
    worker.add_argument("pool", choices=["ruptura", "scraper"])
    worker.set_defaults(handler=_worker)

    portal = commands.add_parser("portal", help="run the demo legacy portal")
    portal.add_argument("--host", help="listen address (default: ESTEIRA_PORTAL_HOST)")
    portal.add_argument("--port", type=int, help="listen port (default: ESTEIRA_PORTAL_PORT)")
    portal.set_defaults(handler=_portal)

    db = commands.add_parser("db", help="database commands")
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="DB_COMMAND")
    db_commands.add_parser("upgrade", help="apply every migration").set_defaults(
        handler=_db_upgrade
    )

    seed = commands.add_parser("seed-demo", help="fill the database with a demo carteira")
    seed.add_argument("--orders", type=int, default=2000, help="open orders (default 2000)")
    seed.add_argument("--products", type=int, default=400, help="products (default 400)")
    seed.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    existing = seed.add_mutually_exclusive_group()
    existing.add_argument(
        "--replace", action="store_true", help="replace existing carteira data instead of refusing"
    )
    existing.add_argument(
        "--if-empty", action="store_true", help="seed only when the carteira is empty"
    )
    seed.set_defaults(handler=_seed_demo)

    load_csv = commands.add_parser(
        "load-csv",
        help="replace carteira tables with CSV exports (all checked first; nothing half-loaded)",
        description="Columns: carteira: num_pedido, cod_produto, qtd_saldo, and optionally "
        "nome_produto, preco, data_expedicao, cnpj, cliente, ativo; estoque: cod_produto, qtd; "
        "producao and saidas: cod_produto, data, qtd. ';', ',' or tab separated; UTF-8 (with "
        "or without BOM) or Windows-1252; numbers like 1234, 1234,5, 1.234,56 or 1,234.56 "
        "(none negative); dates YYYY-MM-DD or DD/MM/YYYY. Writes the database of "
        "ESTEIRA_DATABASE_URL, which `esteira db upgrade` must have migrated.",
    )
    load_csv.add_argument("--carteira", help="open order lines")
    load_csv.add_argument("--estoque", help="current stock per product")
    load_csv.add_argument("--producao", help="production schedule (inflows)")
    load_csv.add_argument("--saidas", help="planned outflows")
    load_csv.add_argument(
        "--encoding", help="the files' encoding (default: UTF-8 if valid, else Windows-1252)"
    )
    load_csv.add_argument(
        "--decimal",
        choices=["comma", "dot"],
        help="the decimal mark, for values like 1.234 that the files do not settle otherwise",
    )
    load_csv.add_argument(
        "--allow-empty",
        action="store_true",
        help="a file with a header and no rows empties its table (refused otherwise)",
    )
    load_csv.set_defaults(handler=_load_csv)

    api_key = commands.add_parser(
        "api-key", help="make an API key for a tenant, and its ESTEIRA_API_KEYS entry"
    )
    api_key.add_argument("tenant", help="the tenant the key belongs to, e.g. vendas")
    api_key.set_defaults(handler=_api_key)

    up = commands.add_parser("up", help="run the whole local stack in the foreground")
    up.add_argument("--api-port", type=int, default=8000)
    up.add_argument("--portal-port", type=int, default=8100)
    up.add_argument("--redis-port", type=int, default=6379)
    up.add_argument("--ruptura-metrics-port", type=int, default=9101)
    up.add_argument("--scraper-metrics-port", type=int, default=9102)
    up.add_argument("--data-dir", default="var", help="where Redis and SQLite keep data")
    up.add_argument("--demo-orders", type=int, default=2000, help="demo orders seeded on first run")
    up.set_defaults(handler=_up)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
