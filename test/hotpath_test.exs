defmodule HotpathTest do
  use ExUnit.Case, async: true
  doctest Hotpath

  test "native_info/0 reports the crate versions the project declares" do
    info = Hotpath.native_info()
    version = Mix.Project.config()[:version]
    assert info.core_version == version
    assert info.nif_crate_version == version
  end

  test "the library is loaded from the app's priv dir" do
    assert File.regular?(Path.join(:code.priv_dir(:hotpath), "native/hotpath_nif.so"))
  end

  @tag :tmp_dir
  test "loaded?/0 is false, not an exception, when the native library cannot load", %{
    tmp_dir: tmp
  } do
    # A VM that has Hotpath's modules but no priv/native/hotpath_nif.so: @on_load fails and
    # leaves Hotpath.Native unloaded.
    ebin = Path.join(tmp, "hotpath/ebin")
    File.mkdir_p!(ebin)
    File.cp_r!(Path.join(:code.lib_dir(:hotpath), "ebin"), ebin)
    refute File.exists?(Path.join(tmp, "hotpath/priv"))

    script = "IO.puts(inspect(Hotpath.loaded?()))"
    {out, 0} = System.cmd("elixir", ["-pa", ebin, "-e", script], stderr_to_stdout: true)

    assert out =~ "[hotpath] could not load the native library hotpath_nif"
    assert out |> String.trim() |> String.ends_with?("false")
  end
end
