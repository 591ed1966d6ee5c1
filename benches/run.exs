# Runs every benchmark under benches/ in one VM (`make bench`).
Code.require_file("support/harness.exs", __DIR__)

__DIR__
|> Path.join("*.exs")
|> Path.wildcard()
|> Enum.reject(&(Path.basename(&1) == "run.exs"))
|> Enum.sort()
|> Enum.each(&Code.require_file/1)
