"""A chat column shows an answer as the model streams it, without the completion's leading space."""
import pytest
from textual.app import App

from stillroom.tui.widgets.chat_column import ChatColumn

pytestmark = pytest.mark.anyio


async def test_streamed_answer_drops_leading_whitespace_only():
    class Host(App):
        def compose(self):
            yield ChatColumn("teacher", "teacher")

    async with Host().run_test(size=(60, 12)) as pilot:
        column = pilot.app.query_one(ChatColumn)
        column.begin("My card was charged twice")
        column.append(" ")
        assert column.answer == ""
        column.append(" billing")
        column.append(" and  refunds ")
        assert column.answer == "billing and  refunds "
        await pilot.pause()
        assert "billing and  refunds" in column.text
