# The floor every other target is expressed against: what crossing into native code costs,
# next to a BIF call and a plain Elixir function call.
#
#     mix run benches/nif_floor.exs
Code.require_file("support/harness.exs", __DIR__)

defmodule Bench.NifFloor do
  def run do
    Hotpath.Bench.run(
      title: "NIF floor",
      note: "The empty NIF is `Hotpath.Native.noop/0`; the BIF is `:erlang.phash2/1` on an atom.",
      cases: [
        {"harness loop only", fn -> :ok end},
        {"local function call", fn -> local(:ok) end},
        {"BIF call", fn -> :erlang.phash2(:hotpath) end},
        {"empty NIF", fn -> Hotpath.Native.noop() end}
      ],
      baselines: ["empty NIF", "BIF call"],
      targets: [
        {:ratio, "empty NIF", "BIF call", :<=, 3.0, :single},
        {:scaling, "empty NIF", :>=, 1.6}
      ]
    )
  end

  defp local(x), do: x
end

Hotpath.Bench.main(&Bench.NifFloor.run/0)
