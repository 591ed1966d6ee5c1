defmodule Hotpath.SchedulerTraceTest do
  # The measuring stick of the scheduler-fairness tests (test/support/scheduler_trace.ex).
  use ExUnit.Case, async: false

  alias Hotpath.SchedulerTrace

  test "a pure BEAM loop is scheduled out within the fairness bound" do
    %{calls: calls, longest_us: us} =
      SchedulerTrace.longest_stretch(fn _ -> Enum.sum(1..1_000) end, ms: 100)

    assert calls > 10
    assert us < SchedulerTrace.limit_us(), "held its scheduler #{us} µs"
  end

  test "argon2 on a normal scheduler holds it; the same on a dirty scheduler does not count" do
    salt = :crypto.strong_rand_bytes(16)
    normal = fn _ -> Hotpath.Native.bench_normal_password_hash("pw", salt, 8_192, 2, 1) end
    dirty = fn _ -> Hotpath.Native.password_hash("pw", salt, 8_192, 2, 1, 32) end

    assert %{longest_us: us} = SchedulerTrace.longest_stretch(normal, ms: 50)
    assert us > 5_000, "a ~10 ms normal-scheduler NIF measured only #{us} µs"

    assert %{longest_us: us} = SchedulerTrace.longest_stretch(dirty, ms: 50)
    assert us < SchedulerTrace.limit_us(), "a dirty NIF counted as #{us} µs on a normal scheduler"
  end
end
