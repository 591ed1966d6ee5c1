defmodule Hotpath.PasswordConfigTest do
  # Changes the application environment: not async.
  use ExUnit.Case, async: false

  alias Hotpath.Password

  setup do
    on_exit(fn -> Application.delete_env(:hotpath, Password) end)
  end

  test "configured options apply to zero-option calls, explicit ones win" do
    Application.put_env(:hotpath, Password, m_cost: 64, t_cost: 1)
    hash = Password.hash_pwd_salt("pw")
    assert "$argon2id$v=19$m=64,t=1,p=1$" <> _ = hash
    assert Password.verify_pass("pw", hash)
    refute Password.needs_rehash?(hash)
    assert "$argon2id$v=19$m=128,t=1,p=1$" <> _ = Password.hash_pwd_salt("pw", m_cost: 128)
  end

  test "the configured pool runs the work" do
    name = :password_config_pool
    start_supervised!({Hotpath.Compute, name: name, max_concurrency: 1})
    Application.put_env(:hotpath, Password, compute: name, m_cost: 64, t_cost: 1)
    hash = Password.hash_pwd_salt("pw")
    assert Password.verify_pass("pw", hash)
    refute Password.no_user_verify()
    assert %{completed: 3} = Hotpath.Compute.info(name)
  end

  test "bad configuration raises ArgumentError naming it" do
    Application.put_env(:hotpath, Password, bogus: 1)

    assert_raise ArgumentError, ~r/config :hotpath, Hotpath.Password/, fn ->
      Password.hash_pwd_salt("pw")
    end
  end
end
