defmodule Hotpath.NativeTest do
  # The error conventions every NIF follows, checked through the debug probes.
  use ExUnit.Case, async: true

  alias Hotpath.Native

  test "the empty NIF answers :ok" do
    assert Native.noop() == :ok
  end

  test "the hit-shaped empty NIF reads hit's arguments and answers its shape" do
    assert Native.noop_hit_shape(:a, "abc", 2) == {:allow, 3, 2}

    for args <- [["a", "abc", 2], [:a, :abc, 2], [:a, "abc", -1]] do
      assert_raise ArgumentError, fn -> apply(Native, :noop_hit_shape, args) end
    end
  end

  test "the record-shaped empty NIFs read their arguments and answer :ok" do
    h = Hotpath.Histogram.new()
    assert Native.noop_histogram_record_shape(h, 1.5) == :ok

    for args <- [[make_ref(), 1.5], [h, :x], [h, "1.5"]] do
      assert_raise ArgumentError, fn -> apply(Native, :noop_histogram_record_shape, args) end
    end

    tags = %{route: "/users/:id", method: "GET"}
    assert Native.noop_metrics_record_shape(:reg, "a.b", 1.5, tags) == :ok

    for args <- [
          ["reg", "a.b", 1.5, tags],
          [:reg, :a, 1.5, tags],
          [:reg, "a.b", :one, tags],
          [:reg, "a.b", 1.5, %{route: "/"}],
          [:reg, "a.b", 1.5, %{route: "/", method: :get}],
          [:reg, "a.b", 1.5, []]
        ] do
      assert_raise ArgumentError, fn -> apply(Native, :noop_metrics_record_shape, args) end
    end
  end

  test "a core argument error raises ArgumentError with its message" do
    assert_raise ArgumentError, "debug_fail: an invalid argument", fn ->
      Native.debug_fail(:argument_error)
    end
  end

  test "a term rustler cannot decode raises ArgumentError" do
    for bad <- ["argument_error", 1, 1.0, {:panic}, [], %{}, self(), make_ref()] do
      assert_raise ArgumentError, fn -> Native.debug_fail(bad) end
    end

    assert_raise ArgumentError, fn -> Native.debug_fail(:unknown_kind) end
  end

  test "expected failures are {:error, {reason, message}}" do
    assert Native.debug_fail(:malformed) == {:error, {:malformed, "debug_fail: malformed bytes"}}

    assert Native.debug_fail(:incompatible) ==
             {:error, {:incompatible, "debug_fail: different layouts"}}
  end

  test "a guarded panic raises Hotpath.PanicError with the panic message" do
    error = assert_raise Hotpath.PanicError, fn -> Native.debug_fail(:panic) end
    assert Exception.message(error) == "native code panicked: debug_fail: deliberate panic"
  end

  test "an unguarded panic is still an Elixir error, not a VM abort" do
    assert_raise ErlangError, ~r/nif_panicked/, fn -> Native.debug_unguarded_panic() end
  end

  test "many panics from many processes leave the VM and the library working" do
    1..200
    |> Task.async_stream(fn _ ->
      try do
        Native.debug_fail(:panic)
      rescue
        Hotpath.PanicError -> :caught
      end
    end)
    |> Enum.each(fn result -> assert result == {:ok, :caught} end)

    assert Native.noop() == :ok
  end

  test "a load failure message says what to do" do
    message = Native.load_error_message({:load_failed, ~c"cannot open shared object file"})
    assert message =~ "could not load the native library hotpath_nif"
    assert message =~ "mix compile"
    assert message =~ "HOTPATH_NIF_PATH"
    assert Native.load_error_message(:no_priv_dir) =~ "not on the code path"
  end
end
