defmodule Hotpath.BenchHarnessTest do
  # The benchmark harness itself (benches/support/harness.exs): its tables and target lines.
  # No timing is asserted.
  use ExUnit.Case, async: true
  import ExUnit.CaptureIO

  Code.require_file("../benches/support/harness.exs", __DIR__)

  @fast [rounds: 3, round_ms: 2, warmup_ms: 2]

  test "prints a table per mode with ratios and a line per target" do
    output =
      capture_io(fn ->
        result =
          Hotpath.Bench.run(
            [
              title: "demo table",
              cases: [
                {"nif", fn -> Hotpath.Native.noop() end},
                {"bif", fn i -> :erlang.phash2(i) end}
              ],
              baselines: ["nif"],
              targets: [
                {:ratio, "bif", "nif", :<=, 1.0e9, :single},
                {:ratio, "bif", "nif", :>=, 1.0e9, :all},
                {:scaling, "nif", :>=, 0.0},
                {:custom, "always", fn results -> {is_map(results[:single]), "yes"} end}
              ]
            ] ++ @fast
          )

        assert %{title: "demo table", targets_met: false, results: %{single: single, all: all}} =
                 result

        assert %{ns: ns, ops: ops} = single["nif"]
        assert ns > 0 and ops > 0
        assert Map.keys(all) |> Enum.sort() == ["bif", "nif"]
      end)

    assert output =~ "## demo table"
    assert output =~ "| case | ns/op | ops/s | vs nif |"
    assert output =~ "1 process, median of 3 rounds"
    assert output =~ "processes (one per scheduler), aggregate"
    assert output =~ ~r/\| nif \| [\d.]+ \| [\d.]+[Mk]? \| 1\.00x \|/
    assert output =~ ~r/target: bif <= 1\.0e9x nif \(1 process\): [\d.]+x - met/
    assert output =~ ~r/target: bif >= 1\.0e9x nif \(one per scheduler\): [\d.]+x - NOT met/

    assert output =~
             ~r/target: nif: throughput with one process per scheduler >= 0\.0x one process: [\d.]+x - met/

    assert output =~ "target: always: yes - met"
  end

  test "a scaling target without both modes says it was not measured" do
    output =
      capture_io(fn ->
        Hotpath.Bench.run(
          [
            title: "single only",
            modes: [:single],
            cases: [{"nif", fn -> Hotpath.Native.noop() end}],
            targets: [{:scaling, "nif", :>=, 1.6}]
          ] ++ @fast
        )
      end)

    assert output =~ "not measured (needs both modes) - NOT met"
  end

  test "the header names the machine and the method" do
    header = Hotpath.Bench.header()
    assert header =~ "schedulers online"
    assert header =~ "OTP #{System.otp_release()}"
    assert header =~ "median"
  end

  test "numbers are formatted for tables" do
    assert Hotpath.Bench.format_ns(12.345) == "12.3"
    assert Hotpath.Bench.format_ns(1234.5) == "1235"
    assert Hotpath.Bench.format_ops(2.5e7) == "25.00M"
    assert Hotpath.Bench.format_ops(2500.0) == "2.5k"
    assert Hotpath.Bench.format_ratio(1.0) == "1.00x"
  end
end
