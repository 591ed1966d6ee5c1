defmodule Hotpath.NotRunningErrorTest do
  use ExUnit.Case, async: true

  doctest Hotpath.NotRunningError

  test "every area raises it for a name that runs nothing, with the module and the name" do
    for {fun, module, name} <- [
          {fn -> Hotpath.RateLimiter.hit(:nr_limiter, "k") end, Hotpath.RateLimiter, :nr_limiter},
          {fn -> Hotpath.RateLimiter.info(:nr_limiter) end, Hotpath.RateLimiter, :nr_limiter},
          {fn -> Hotpath.Metrics.record(:nr_metrics, "a.b", 1) end, Hotpath.Metrics, :nr_metrics},
          {fn -> Hotpath.Metrics.info(:nr_metrics) end, Hotpath.Metrics, :nr_metrics},
          {fn -> Hotpath.Compute.info(:nr_pool) end, Hotpath.Compute, :nr_pool},
          {fn -> Hotpath.Password.hash_pwd_salt("pw", compute: :nr_pool) end, Hotpath.Compute,
           :nr_pool}
        ] do
      error = assert_raise Hotpath.NotRunningError, fun
      assert {error.module, error.name} == {module, name}
      assert Exception.message(error) =~ "no #{inspect(module)} named #{inspect(name)} is running"
    end
  end

  test "a pid that has exited is named as a process" do
    pid = spawn(fn -> :ok end)
    ref = Process.monitor(pid)
    assert_receive {:DOWN, ^ref, _, _, _}

    assert Exception.message(%Hotpath.NotRunningError{module: Hotpath.Compute, name: pid}) ==
             "the Hotpath.Compute process #{inspect(pid)} is not running"
  end
end
