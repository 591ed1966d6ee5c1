defmodule Hotpath.JSONTest do
  use ExUnit.Case, async: true

  alias Hotpath.JSON
  alias Hotpath.Test.JSONDecoder

  test "encodes the JSON types" do
    term = %{
      "s" => "plain",
      :atom_key => [1, -2, 2.5, 1.0e-9, nil, true, false, :ok],
      "nested" => %{"empty_list" => [], "empty_map" => %{}}
    }

    assert JSONDecoder.decode!(JSON.encode!(term)) == %{
             "s" => "plain",
             "atom_key" => [1, -2, 2.5, 1.0e-9, nil, true, false, "ok"],
             "nested" => %{"empty_list" => [], "empty_map" => %{}}
           }
  end

  test "escapes strings so they round-trip and embed in HTML and JavaScript" do
    text = "q\"b\\s/n\nr\rt\t\u0001<script>&\u2028ünï😀"
    encoded = JSON.encode!(text)
    refute encoded =~ "<"
    refute encoded =~ "\u2028"
    assert JSONDecoder.decode!(encoded) == text
  end

  test "refuses what JSON cannot carry" do
    for bad <- [<<255>>, {1, 2}, self(), %{1 => 2}, %URI{}, [make_ref()]] do
      assert_raise ArgumentError, fn -> JSON.encode!(bad) end
    end
  end
end
