defmodule Hotpath.Test.OpenMetricsParser do
  @moduledoc false
  # The OpenMetrics parser of the Prometheus project's Python client (prometheus-client,
  # `prometheus_client.openmetrics.parser`) on an exposition text.

  # Exit 3: the parser is not installed; 1: it refused the text.
  @script """
  import sys
  try:
      from prometheus_client.openmetrics.parser import text_string_to_metric_families
  except ImportError as e:
      print(e)
      sys.exit(3)
  try:
      families = list(text_string_to_metric_families(sys.stdin.read()))
  except Exception as e:
      print("error: %s" % e)
      sys.exit(1)
  for f in families:
      for s in f.samples:
          ex = s.exemplar and " # %s %r" % (sorted(s.exemplar.labels.items()), s.exemplar.value)
          print("%s %s %s %r%s" % (f.type, s.name, sorted(s.labels.items()), s.value, ex or ""))
  """

  @doc """
  `{:ok, samples}` (`{type, name, labels, value}` as the parser read them, values as text,
  followed by ` # [labels] value` for a sample with an exemplar) or
  `{:error, message}`; flunks when python3 or prometheus-client is missing.
  """
  def parse(text) do
    python =
      System.find_executable("python3") ||
        ExUnit.Assertions.flunk("python3 is not installed (scripts/bootstrap checks for it)")

    path = Path.join(System.tmp_dir!(), "hotpath_#{System.unique_integer([:positive])}.om")
    File.write!(path, text)

    try do
      case System.cmd("sh", ["-c", ~s("$0" -c "$1" < "$2"), python, @script, path],
             stderr_to_stdout: true
           ) do
        {out, 0} ->
          {:ok, String.split(out, "\n", trim: true)}

        {out, 3} ->
          ExUnit.Assertions.flunk(
            "prometheus-client is not installed for #{python} (scripts/bootstrap installs it): #{out}"
          )

        {out, _} ->
          {:error, out}
      end
    after
      File.rm(path)
    end
  end
end
