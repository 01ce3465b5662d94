//! Telling crawlers and link-preview fetchers from people, by User-Agent.

use super::ClickKind;
use std::sync::LazyLock;

use aho_corasick::AhoCorasick;

/// Fragments of the User-Agent strings of known crawlers and link-preview fetchers.
/// "bot" alone covers Googlebot, bingbot, Twitterbot, Slackbot, Discordbot, LinkedInBot,
/// TelegramBot, Applebot, DuckDuckBot, YandexBot and many more.
const BOT_MARKERS: &[&str] = &[
    "bot",
    "crawl",
    "spider",
    "slurp",
    "facebookexternalhit",
    "facebookcatalog",
    "whatsapp",
    "preview",
    "embedly",
    "mediapartners-google",
    "ia_archiver",
    "pinterest",
    "vkshare",
    "headlesschrome",
];

static MATCHER: LazyLock<AhoCorasick> = LazyLock::new(|| {
    AhoCorasick::builder()
        .ascii_case_insensitive(true)
        .build(BOT_MARKERS)
        .expect("the bot markers are valid patterns")
});

/// True when `user_agent` names a known crawler or link-preview fetcher.
pub fn is_bot(user_agent: &[u8]) -> bool {
    MATCHER.is_match(user_agent)
}

/// How a click from `user_agent` is counted.
pub fn click_kind(user_agent: &[u8]) -> ClickKind {
    if is_bot(user_agent) {
        ClickKind::Bot
    } else {
        ClickKind::Person
    }
}

#[cfg(test)]
mod tests {
    use super::is_bot;

    #[test]
    fn recognises_crawlers_and_preview_fetchers() {
        for agent in [
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
            "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
            "Twitterbot/1.0",
            "WhatsApp/2.23.20.0",
            "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
            "Mozilla/5.0 (compatible; Baiduspider/2.0)",
        ] {
            assert!(is_bot(agent.as_bytes()), "{agent}");
        }
    }

    #[test]
    fn people_are_not_bots() {
        for agent in [
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
            "curl/8.5.0",
            "",
        ] {
            assert!(!is_bot(agent.as_bytes()), "{agent}");
        }
    }
}
