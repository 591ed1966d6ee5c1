defmodule Hotpath.OptionsTest do
  use ExUnit.Case, async: true

  alias Hotpath.Options

  @schema [
    name: [type: :name, required: true, doc: "The name"],
    size: [type: {:integer, 1, 10}, default: 5, doc: "The size"],
    mode: [type: {:or, [{:value, nil}, {:in, [:a, :b]}]}, default: nil],
    tags: [type: {:list, :atom}],
    seam: [type: :atom, hidden: true]
  ]

  test "validate!/3 returns the options in schema order with their defaults" do
    assert Options.validate!([tags: [:x], name: :n], @schema, "t") ==
             [name: :n, size: 5, mode: nil, tags: [:x]]

    assert Options.validate!([name: :n, seam: Fake, mode: :b], @schema, "t")[:seam] == Fake
  end

  test "every refusal is an ArgumentError naming the option, the choices and the value" do
    for {opts, message} <- [
          {:nope, ~r/^t options must be a keyword list, got: :nope$/},
          {[:name], ~r/must be a keyword list/},
          {[name: :n, bogus: 1],
           ~r/^unknown options \[:bogus\], valid options are: \[:name, :size, :mode, :tags\] \(t\)$/},
          {[], ~r/^missing required option :name \(t\): expected a non-nil, non-boolean atom$/},
          {[name: nil], ~r/^:name must be a non-nil, non-boolean atom, got: nil \(t\)$/},
          {[name: :n, size: 11], ~r/^:size must be an integer in 1\.\.10, got: 11 \(t\)$/},
          {[name: :n, mode: :c], ~r/^:mode must be nil or one of :a, :b, got: :c \(t\)$/},
          {[name: :n, tags: [:a | :b]], ~r/:tags must be a list \(each element an atom\)/},
          {[name: :n, tags: ["a"]], ~r/:tags must be a list/}
        ] do
      assert_raise ArgumentError, message, fn -> Options.validate!(opts, @schema, "t") end
    end
  end

  test "docs/1 lists every option but the hidden ones" do
    docs = Options.docs(@schema)

    assert docs =~
             "  * `:name` (a non-nil, non-boolean atom, required) - The name.\n" <>
               "  * `:size` (an integer in 1..10; default `5`) - The size."

    refute docs =~ ":seam"
  end
end
