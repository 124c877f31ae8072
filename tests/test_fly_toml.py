"""fly.toml rules: every fixture marks the lines that must be reported with ``# !CODE[,CODE]``."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from aibridge.fly.catalog import RULES
from aibridge.fly.model import TomlSyntaxError, load_fly_config, parse_fly_document
from aibridge.fly.rules_toml import check_fly_toml
from aibridge.fly.units import duration_seconds, parse_go_duration, parse_memory_mb, parse_volume_gb

FIXTURES = Path(__file__).parent / "fixtures" / "fly" / "toml"
MARK = re.compile(r"# !([A-Z0-9,]+)")


def expected(text: str) -> Counter[tuple[str, int]]:
    out: Counter[tuple[str, int]] = Counter()
    for number, line in enumerate(text.splitlines(), start=1):
        match = MARK.search(line)
        if match:
            out.update((code, number) for code in match.group(1).split(","))
    return out


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*.toml")), ids=lambda p: p.stem)
def test_fixture_reports_exactly_the_marked_lines(path: Path) -> None:
    text = path.read_text()
    findings = check_fly_toml(parse_fly_document(text, path.name))
    got = Counter((f.code, f.line) for f in findings)
    assert got == expected(text), "\n".join(f"{f.code}:{f.line} {f.message}" for f in findings)
    for f in findings:
        assert f.severity is RULES[f.code].severity
        assert f.message and f.fix and f.column >= 1


def test_valid_fixtures_cover_every_schema_section() -> None:
    from aibridge.fly.schema import ROOT

    seen: set[str] = set()
    for name in ("valid_tables.toml", "valid_arrays.toml"):
        data = parse_fly_document((FIXTURES / name).read_text()).data
        seen |= set(data)
    aliases = {"compute": "vm", "mount": "mounts", "metric": "metrics"}
    assert {aliases.get(k, k) for k in seen} >= set(ROOT.fields)


def test_flyctl_error_text_is_quoted_for_wrong_shapes() -> None:
    doc = parse_fly_document((FIXTURES / "bad_http_checks_table.toml").read_text())
    (finding,) = check_fly_toml(doc)
    assert (
        "json: cannot unmarshal object into Go struct field HTTPService.http_service.checks "
        "of type []*appconfig.ServiceHTTPCheck" in finding.message
    )
    doc = parse_fly_document((FIXTURES / "bad_concurrency_array.toml").read_text())
    (finding,) = check_fly_toml(doc)
    assert (
        "json: cannot unmarshal array into Go struct field HTTPService.http_service.concurrency "
        "of type fly.MachineServiceConcurrency" in finding.message
    )


def test_unknown_key_suggests_the_near_name() -> None:
    findings = check_fly_toml(parse_fly_document((FIXTURES / "bad_unknown_keys.toml").read_text()))
    messages = [f.message for f in findings if f.code == "FLY004"]
    assert any("did you mean `http_service`" in m for m in messages)
    assert any("did you mean `internal_port`" in m for m in messages)


def test_bare_integer_interval_in_http_checks_is_nanoseconds() -> None:
    text = 'app = "a"\n[http_service]\ninternal_port = 8080\n[[http_service.checks]]\ninterval = 10000\n'
    (finding,) = check_fly_toml(parse_fly_document(text))
    assert finding.code == "FLY105" and finding.line == 5 and "10µs" in finding.message


def test_same_integer_in_services_checks_is_milliseconds() -> None:
    text = (
        'app = "a"\n[[services]]\ninternal_port = 8080\n[[services.ports]]\nport = 80\n'
        "[[services.tcp_checks]]\ninterval = 10000\n"
    )
    doc = parse_fly_document(text)
    assert check_fly_toml(doc) == []
    assert doc.config.checks[0].interval_s == 10.0


def test_syntax_error_has_a_position() -> None:
    with pytest.raises(TomlSyntaxError) as caught:
        parse_fly_document('app = "a"\n[http_service]\ninternal_port = = 8080\n')
    assert (caught.value.line, caught.value.column) == (3, 17)


def test_load_fly_config_gives_the_values_others_read(tmp_path: Path) -> None:
    config = load_fly_config(FIXTURES / "valid_tables.toml")
    assert config.app == "tables-demo"
    assert config.internal_port == 8080
    assert config.memory_mb == 8192
    assert (config.metrics_port, config.metrics_path) == (9091, "/metrics")
    assert config.health_check_path == "/health"
    assert config.kill_timeout_s == 10.0
    arrays = load_fly_config(FIXTURES / "valid_arrays.toml")
    assert (arrays.internal_port, arrays.memory_mb, arrays.kill_timeout_s) == (8080, 1024, 30.0)
    canonical = load_fly_config(FIXTURES / "valid_arrays_canonical.toml")
    assert canonical.processes == {"app": "python -m app"}
    assert [m.destination for m in canonical.mounts] == ["/data", "/scratch"]
    assert canonical.health_check_path == "/health" and canonical.memory_mb == 256
    preset = tmp_path / "fly.toml"
    preset.write_text('app = "x"\n[[vm]]\nsize = "shared-cpu-2x"\n')
    assert load_fly_config(preset).memory_mb == 512
    preset.write_text('app = "x"\n[[vm]]\nsize = "performance-1x"\nmemory_mb = 4096\n')
    assert load_fly_config(preset).memory_mb == 4096


def test_load_fly_config_errors_are_aibridge_errors(tmp_path: Path) -> None:
    from aibridge.errors import ConfigError, FileReadError

    with pytest.raises(FileReadError):
        load_fly_config(tmp_path / "missing.toml")
    bad = tmp_path / "fly.toml"
    bad.write_text("app = \n")
    with pytest.raises(ConfigError, match=r"fly.toml:1:7"):
        load_fly_config(bad)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("10s", 10), ("1m30s", 90), ("500ms", 0.5), ("1.5h", 5400), ("0", 0), ("10µs", 1e-5), ("2h45m", 9900)],
)
def test_go_durations(text: str, seconds: float) -> None:
    assert parse_go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["10", "1d", "s", "", "10 s", "1m-3s"])
def test_bad_go_durations(text: str) -> None:
    with pytest.raises(ValueError, match="time: "):
        parse_go_duration(text)


def test_bare_duration_units() -> None:
    assert duration_seconds(30, "s") == 30
    assert duration_seconds(15000, "ms") == 15
    assert duration_seconds(10000, "ns") == pytest.approx(1e-5)


@pytest.mark.parametrize(
    ("value", "mb"),
    [(512, 512), ("512", 512), ("512mb", 512), ("1gb", 1024), ("2GB", 2048), ("1g", 1024), ("1GiB", 1024)],
)
def test_memory_formats(value: object, mb: int) -> None:
    assert parse_memory_mb(value) == mb


@pytest.mark.parametrize(
    ("value", "message"),
    [("0", "memory cannot be zero"), ("lots", "invalid size"), (True, "invalid size: 'true'")],
)
def test_bad_memory(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_memory_mb(value)


def test_volume_sizes_are_decimal_gb() -> None:
    assert parse_volume_gb(3) == 3
    assert parse_volume_gb("30gb") == 30
    # helpers.ParseSize divides bytes by units.GB in integers; go-units reads "GiB" as decimal GB.
    assert parse_volume_gb("500mb") == 0
    assert parse_volume_gb("1.5gb") == 1
    assert parse_volume_gb("10GiB") == 10
