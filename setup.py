from setuptools import find_packages, setup

OTEL = ["opentelemetry-api>=1.30,<2", "opentelemetry-sdk>=1.30,<2",
        "opentelemetry-exporter-otlp-proto-http>=1.30,<2"]

setup(
    name="freeapi",
    version="0.1.0",
    description="Self-hosted OpenAI-compatible gateway for DeepSeek and sibling model vendors",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["freeapi", "freeapi.*", "providers", "providers.*"]),
    # The status page (GET /status) is a file, not code. py.typed (PEP 561): the package's
    # annotations are checked (tests/test_types.py), so type checkers may use them.
    package_data={"freeapi": ["static/*.html", "py.typed"]},
    install_requires=[
        "tornado>=6.3,<7",
        "pluggy>=1.3,<2",
        "pyyaml>=6,<7",
        # GET /metrics: the Prometheus project's own client; its multiprocess mode
        # aggregates `--workers N` into one view.
        "prometheus-client>=0.20,<1",
        # A faster event loop (MagicStack's libuv-based asyncio loop, the field's usual
        # one): 12-15% fewer instructions per request for the gateway (bench/README.md,
        # "Tornado's per-request costs"). None for Windows or PyPy: asyncio's runs there.
        "uvloop>=0.18; sys_platform != 'win32' and platform_python_implementation == 'CPython'",
        # The client side's HTTP/1.1 parser (MagicStack's binding of llhttp, Node.js's
        # parser, as uvicorn uses it): freeapi/serving/ reads client connections with it
        # instead of Tornado's HTTPServer/IOStream/HTTP1Connection, which cost a request
        # more than all of freeapi's own work -- 1,571k -> 1,087k instructions a chat
        # request, 2,056k -> 1,495k a 20-chunk stream (bench/README.md, "The HTTP core").
        # Wheels for CPython; elsewhere the gateway runs on Tornado's server.
        "httptools>=0.6,<1; platform_python_implementation == 'CPython'",
    ],
    extras_require={
        # uvloop is a dependency now; the extra stays so old install commands still work.
        "fast": [],
        # state.database_url: asyncpg, chosen over psycopg 3 by bench/postgres_driver.py
        # (twice the batch-insert throughput of the ledger's writes); it has its own pool.
        "postgres": ["asyncpg>=0.29,<1"],
        # Optional: OpenTelemetry traces over OTLP/HTTP (freeapi/telemetry.py,
        # telemetry.otlp_endpoint); never imported while no endpoint is configured.
        "otel": OTEL,
        "test": [
            "pytest>=8,<10",
            # Old but the only Tornado-native pytest runner; its deprecation warnings are
            # filtered by name in pytest.ini.
            "pytest-tornasync==0.6.0.post2",
            "openai>=1.40",
            # The /v1/messages door is tested with the official Anthropic SDK.
            "anthropic>=0.40",
            # Property-based fuzzing of the wire parsers (tests/test_wire_fuzz.py).
            "hypothesis>=6.100,<7",
            # The status page test drives a real browser (Debian's chromium, never a
            # downloaded one) with Microsoft's Playwright, the well-kept driver of the field.
            "playwright>=1.40",
            # The PostgreSQL store is tested against a real server (tests/test_store.py).
            "asyncpg>=0.29,<1",
            # Traces (tests/test_telemetry.py): the `otel` extra, and the protobuf
            # messages its OTLP receiver decodes the export with.
            *OTEL,
            "opentelemetry-proto>=1.30,<2",
            # tests/test_types.py type-checks the pipeline, providers and dialects; pinned
            # exactly because each mypy release adds checks, and CI must not turn red on
            # an upgrade rather than on a change of ours.
            "mypy==2.4.1",
        ],
    },
    entry_points={
        "console_scripts": ["freeapi = freeapi.cli:main"],
        # Built-in providers register exactly as a third-party plugin package would.
        "freeapi": [
            "deepseek = providers.deepseek",
            "kimi = providers.kimi",
            "glm = providers.glm",
            "qwen = providers.qwen",
            "step = providers.step",
            "minimax = providers.minimax",
            "spark = providers.spark",
            "metaso = providers.metaso",
            "openai = providers.openai_compat",
        ],
    },
)
