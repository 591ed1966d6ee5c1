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
end
