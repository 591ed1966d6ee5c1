defmodule Hotpath.Test.Promtool do
  @moduledoc false
  # `promtool check metrics` (lint included) on an exposition text.

  @doc "Returns `{output, exit_status}`; flunks when promtool is not installed."
  def check(text) do
    promtool =
      System.find_executable("promtool") ||
        ExUnit.Assertions.flunk(
          "promtool is not installed (scripts/bootstrap installs the Debian prometheus package)"
        )

    path = Path.join(System.tmp_dir!(), "hotpath_#{System.unique_integer([:positive])}.prom")
    File.write!(path, text)

    try do
      System.cmd("sh", ["-c", ~s("$0" check metrics < "$1"), promtool, path],
        stderr_to_stdout: true
      )
    after
      File.rm(path)
    end
  end
end
