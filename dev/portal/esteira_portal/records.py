"""The portal's service orders: thousands of deterministic records, the same on every run."""

from __future__ import annotations

import random

FIRST_OS = 2024001

_CLIENTES = (
    ("Hospital Santa Luzia", "Curitiba"),
    ("Metalúrgica Boa Vista", "Joinville"),
    ("Frigorífico Vale Verde", "Chapecó"),
    ("Laticínios Serra Gaúcha", "Caxias do Sul"),
    ("Prefeitura de Maringá", "Maringá"),
    ("Clínica São Camilo", "Londrina"),
    ("Transportes Rota Sul", "Ponta Grossa"),
    ("Cooperativa Agroleite", "Cascavel"),
)
_EQUIPAMENTOS = (
    ("Compressor", "Schulz", "CSL 20"),
    ("Gerador", "Weg", "GTA 160"),
    ("Autoclave", "Cristófoli", "Vitale 21"),
    ("Empilhadeira", "Hyster", "H50FT"),
    ("Bomba hidráulica", "KSB", "Meganorm 32"),
    ("Chiller", "Carrier", "30RB 060"),
)
_STATUS = ("ABERTA", "EM ATENDIMENTO", "AGUARDANDO PEÇA", "CONCLUÍDA")
_DEFEITOS = (
    "Não liga",
    "Vazamento de óleo",
    "Ruído excessivo",
    "Superaquecimento",
    "Falha no painel",
)


def _cnpj_digits(rng: random.Random) -> str:
    return "".join(str(rng.randint(0, 9)) for _ in range(8)) + "0001" + f"{rng.randint(10, 99)}"


def _format_cnpj(digits: str) -> str:
    return f"{digits[:2]}.{digits[2:5]}.{digits[5:8]}/{digits[8:12]}-{digits[12:]}"


def find(numero_os: str, records: int) -> list[tuple[str, str]] | None:
    """The labelled fields of one OS, in the portal's display order, or None when it has none."""
    if not numero_os.isdigit() or not FIRST_OS <= int(numero_os) < FIRST_OS + records:
        return None
    number = int(numero_os)
    rng = random.Random(number)
    cliente, municipio = _CLIENTES[number % len(_CLIENTES)]
    client_rng = random.Random(cliente)  # one CNPJ per cliente, whatever the OS
    tipo, fabricante, modelo = _EQUIPAMENTOS[rng.randrange(len(_EQUIPAMENTOS))]
    serial = f"{fabricante[:3].upper()}-{rng.randint(100000, 999999)}"
    return [
        ("OS", numero_os),
        ("CLIENTE", cliente),
        ("CNPJ", _format_cnpj(_cnpj_digits(client_rng))),
        ("TIPO DO EQUIPAMENTO", tipo),
        ("DESCRIÇÃO", f"{tipo} {modelo} - unidade {rng.randint(1, 9)}"),
        ("FABRICANTE", fabricante),
        ("MODELO", modelo),
        ("NUMERO DE SERIE", serial),
        ("MUNICIPIO", municipio),
        ("STATUS DA OS", _STATUS[rng.randrange(len(_STATUS))]),
        ("DATA DE ABERTURA", f"{rng.randint(1, 28):02d}/{rng.randint(1, 12):02d}/2026"),
        ("DEFEITO RELATADO", _DEFEITOS[rng.randrange(len(_DEFEITOS))]),
        ("TÉCNICO RESPONSÁVEL", f"Técnico {rng.randint(1, 40):02d}"),
    ]
