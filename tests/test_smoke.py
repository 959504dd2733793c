from dataserve import HTTPDataClient, HTTPDataServer


def test_seed_calls_round_trip(client: HTTPDataClient, echo_server: HTTPDataServer) -> None:
    assert client.send("/echo", [1, 2, 3]) == [1, 2, 3]
