defmodule Hotpath.E2E.DashboardTest do
  # `make e2e`: headless Chromium opens the demo's dashboard while the load generator runs,
  # waits for every chart to draw data, saves a screenshot to _build/e2e/dashboard.png, and
  # fails if the page shows no numbers or logs a JavaScript error. Excluded from a plain
  # `mix test` (it needs Chromium); run it with `mix test --only e2e`.
  use ExUnit.Case, async: false

  alias Hotpath.Test.WebDriver

  @moduletag :e2e
  @moduletag timeout: 120_000
  @screenshot Path.expand("../../_build/e2e/dashboard.png", __DIR__)

  setup do
    case WebDriver.executables() do
      {:ok, _} -> :ok
      {:error, message} -> flunk(message)
    end

    {:ok, demo} = Hotpath.Demo.start(port: 0)
    on_exit(fn -> Hotpath.Demo.stop(demo) end)
    %{demo: demo}
  end

  test "the dashboard draws live data while load runs", %{demo: demo} do
    load =
      Task.async(fn ->
        Hotpath.Demo.Load.run(demo.url, duration_ms: 12_000, well_behaved: 12, abusive: 3)
      end)

    wd = WebDriver.start!()

    try do
      WebDriver.navigate!(wd, demo.url <> "/")

      page = wait_for_data(wd, 60)

      File.mkdir_p!(Path.dirname(@screenshot))
      File.write!(@screenshot, WebDriver.screenshot!(wd))
      IO.puts("\ndashboard screenshot: #{Path.relative_to_cwd(@screenshot)}")

      errors =
        for %{"level" => "SEVERE"} = entry <- WebDriver.browser_log!(wd), do: entry["message"]

      assert errors == [], "the page logged errors:\n" <> Enum.join(errors, "\n")

      for {tile, text} <- page["tiles"] do
        assert text =~ ~r/\d/, "tile #{tile} shows no number: #{inspect(text)}"
      end

      assert page["status"] =~ "live"
    after
      WebDriver.stop(wd)
    end

    result = Task.await(load, 60_000)
    assert result.classes.well_behaved.requests > 0
  end

  # Polls the page until every chart has drawn at least 6 points and requests are counted.
  defp wait_for_data(wd, tries) do
    page =
      WebDriver.execute!(wd, """
      const tiles = {};
      document.querySelectorAll("[data-tile]").forEach(e => { tiles[e.dataset.tile] = e.textContent; });
      const points = [...document.querySelectorAll("canvas")].map(c => Number(c.dataset.points || 0));
      return {tiles, points, status: document.getElementById("status").textContent};
      """)

    requests = page["tiles"]["requests"] |> String.replace(~r/[^\d]/, "")
    ready? = Enum.all?(page["points"], &(&1 >= 6)) and requests not in ["", "0"]

    cond do
      ready? ->
        page

      tries == 0 ->
        flunk("the dashboard never showed data: #{inspect(page)}")

      true ->
        Process.sleep(500)
        wait_for_data(wd, tries - 1)
    end
  end
end
