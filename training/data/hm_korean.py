"""Korean words for the H&M reader's topics (`HMOptions(language="ko")`, `clik data hm --language ko`).

The English topic is built from the article columns (training/data/hm.py): name = section +
product type, cat1..cat4 = index group, product group, garment group, department, kwds = colour
and graphical-appearance names. The Korean topic is the same template over these tables, word
for word, so the two topics of an exhibition say the same thing and nothing else differs (same
products, same draws, same group key). Colours are composed: a modifier (Dark, Light, Other)
before a base colour, as H&M spells them. The tables cover every value the dev data's topics use
(../shared/data/hm: 82 topic groups); a value they lack stays English and is counted in the
reader's summary, so another split of the source says what it is missing. Written by hand for
this project (docs/multilingual.md lists the choices).
"""

from __future__ import annotations

# H&M brand lines keep their names (Divided, H&M+), as a Korean shop writes them.
SECTIONS = {
    "Contemporary Casual": "컨템포러리 캐주얼",
    "Contemporary Smart": "컨템포러리 스마트",
    "Contemporary Street": "컨템포러리 스트리트",
    "Denim Men": "남성 데님",
    "Divided Accessories": "디바이디드 액세서리",
    "Divided Basics": "디바이디드 베이직",
    "Divided Collection": "디바이디드 컬렉션",
    "Divided Projects": "디바이디드 프로젝트",
    "Divided Selected": "디바이디드 셀렉티드",
    "H&M+": "H&M+ 빅사이즈",
    "Ladies Denim": "여성 데님",
    "Ladies H&M Sport": "여성 H&M 스포츠",
    "Mama": "임부복",
    "Men Accessories": "남성 액세서리",
    "Men Suits & Tailoring": "남성 정장·테일러링",
    "Men Underwear": "남성 속옷",
    "Men H&M Sport": "남성 H&M 스포츠",
    "Womens Big accessories": "여성 큰 액세서리",
    "Womens Casual": "여성 캐주얼",
    "Womens Everyday Basics": "여성 데일리 베이직",
    "Womens Everyday Collection": "여성 데일리 컬렉션",
    "Womens Jackets": "여성 재킷",
    "Womens Lingerie": "여성 란제리",
    "Womens Nightwear, Socks & Tigh": "여성 잠옷·양말·타이츠",
    "Womens Shoes": "여성 신발",
    "Womens Small accessories": "여성 작은 액세서리",
    "Womens Swimwear, beachwear": "여성 수영복·비치웨어",
    "Womens Tailoring": "여성 테일러링",
    "Womens Trend": "여성 트렌드",
}

PRODUCT_TYPES = {
    "Ballerinas": "플랫슈즈",
    "Belt": "벨트",
    "Bikini top": "비키니 상의",
    "Blazer": "블레이저",
    "Blouse": "블라우스",
    "Bodysuit": "바디수트",
    "Boots": "부츠",
    "Bra": "브라",
    "Cardigan": "카디건",
    "Coat": "코트",
    "Dress": "원피스",
    "Earring": "귀걸이",
    "Hair ties": "머리끈",
    "Hair/alice band": "머리띠",
    "Hat/beanie": "모자·비니",
    "Heeled sandals": "힐 샌들",
    "Hoodie": "후드티",
    "Jacket": "재킷",
    "Jumpsuit/Playsuit": "점프수트",
    "Leggings/Tights": "레깅스·타이츠",
    "Necklace": "목걸이",
    "Other accessories": "기타 액세서리",
    "Pyjama set": "잠옷 세트",
    "Ring": "반지",
    "Sandals": "샌들",
    "Scarf": "스카프",
    "Shirt": "셔츠",
    "Shorts": "반바지",
    "Skirt": "치마",
    "Sneakers": "운동화",
    "Socks": "양말",
    "Sweater": "스웨터",
    "Swimwear bottom": "수영복 하의",
    "Swimsuit": "원피스 수영복",
    "T-shirt": "티셔츠",
    "Top": "상의",
    "Trousers": "바지",
    "Underwear bottom": "속옷 하의",
    "Underwear Tights": "스타킹",
    "Underwear body": "보정 바디수트",
    "Unknown": "기타 상품",  # a group H&M left untyped still names a topic
    "Vest top": "민소매 상의",
}

# Colours: modifier + base, as in "Dark Blue" -> "진한 파랑"; whole names first (exceptions).
COLOUR_MODIFIERS = {"Dark": "진한", "Light": "연한", "Other": "기타"}
BASE_COLOURS = {
    "Beige": "베이지",
    "Black": "검정",
    "Blue": "파랑",
    "Green": "초록",
    "Grey": "회색",
    "Orange": "주황",
    "Pink": "분홍",
    "Purple": "보라",
    "Red": "빨강",
    "Turquoise": "청록",
    "White": "흰색",
    "Yellow": "노랑",
}
COLOURS = {
    "Bronze/Copper": "브론즈",
    "Gold": "금색",
    "Greenish Khaki": "카키",
    "Greyish Beige": "회베이지",
    "Off White": "오프화이트",
    "Other": "기타 색상",
    "Silver": "은색",
    "Transparent": "투명",
    "Yellowish Brown": "황갈색",
}

GRAPHICAL_APPEARANCES = {
    "All over pattern": "전체 패턴",
    "Application/3D": "입체 장식",
    "Argyle": "아가일",
    "Chambray": "샴브레이",
    "Check": "체크",
    "Colour blocking": "컬러 블로킹",
    "Contrast": "배색",
    "Denim": "데님",
    "Dot": "도트",
    "Embroidery": "자수",
    "Front print": "앞면 프린트",
    "Glittering/Metallic": "글리터",
    "Hologram": "홀로그램",
    "Jacquard": "자카드",
    "Lace": "레이스",
    "Melange": "멜란지",
    "Mesh": "메시",
    "Metallic": "메탈릭",
    "Mixed solid/pattern": "무지·패턴 혼합",
    "Neps": "넵",
    "Other pattern": "기타 패턴",
    "Other structure": "기타 조직",
    "Placement print": "포인트 프린트",
    "Sequin": "시퀸",
    "Slub": "슬럽",
    "Solid": "무지",
    "Stripe": "스트라이프",
    "Transparent": "시스루",
    "Treatment": "워싱",
}

INDEX_GROUPS = {
    "Baby/Children": "유아동",
    "Divided": "디바이디드",
    "Ladieswear": "여성의류",
    "Menswear": "남성의류",
    "Sport": "스포츠",
}

PRODUCT_GROUPS = {
    "Accessories": "액세서리",
    "Bags": "가방",
    "Garment Full body": "전신 의류",
    "Garment Lower body": "하의",
    "Garment Upper body": "상의",
    "Items": "잡화",
    "Nightwear": "잠옷",
    "Shoes": "신발",
    "Socks & Tights": "양말·타이츠",
    "Stationery": "문구",
    "Swimwear": "수영복",
    "Underwear": "속옷",
}

GARMENT_GROUPS = {
    "Accessories": "액세서리",
    "Blouses": "블라우스",
    "Dressed": "정장",
    "Dresses Ladies": "여성 원피스",
    "Dresses/Skirts girls": "여아 원피스·치마",
    "Jersey Basic": "베이직 저지",
    "Jersey Fancy": "팬시 저지",
    "Knitwear": "니트웨어",
    "Outdoor": "아우터",
    "Shirts": "셔츠",
    "Shoes": "신발",
    "Shorts": "반바지",
    "Skirts": "치마",
    "Socks and Tights": "양말·타이츠",
    "Special Offers": "특가",
    "Swimwear": "수영복",
    "Trousers": "바지",
    "Trousers Denim": "데님 바지",
    "Under-, Nightwear": "속옷·잠옷",
    "Woven/Jersey/Knitted mix Baby": "유아 혼방",
}

DEPARTMENTS = {
    "Asia Assortment": "아시아 기획",
    "Basic 1": "베이직 1",
    "Basics": "베이직",
    "Belts": "벨트",
    "Blanks": "무지 기본",
    "Blouse": "블라우스",
    "Blouse & Dress": "블라우스·원피스",
    "Boots": "부츠",
    "Campaigns": "캠페인",
    "Casual Lingerie": "캐주얼 란제리",
    "Clean Lingerie": "심플 란제리",
    "Denim Other Garments": "기타 데님 의류",
    "Denim Trousers": "데님 바지",
    "Denim trousers": "데님 바지",
    "Divided+": "디바이디드+",
    "Dress": "원피스",
    "Dresses": "원피스",
    "EQ & Special Collections": "적도 기획·스페셜 컬렉션",
    "Equatorial Assortment": "적도 기획",
    "Everyday Waredrobe Denim": "데일리 데님",
    "Expressive Lingerie": "화려한 란제리",
    "Flats": "플랫슈즈",
    "Functional Lingerie": "기능성 란제리",
    "Gloves/Hats": "장갑·모자",
    "Hair Accessories": "헤어 액세서리",
    "Heavy Basic Jersey": "두꺼운 베이직 저지",
    "Heels": "힐",
    "Jersey": "저지",
    "Jersey Basic": "베이직 저지",
    "Jersey Fancy": "팬시 저지",
    "Jersey License": "라이선스 저지",
    "Jersey fancy": "팬시 저지",
    "Jewellery": "주얼리",
    "Jewellery Extended": "주얼리 확장",
    "Knit & Woven": "니트·우븐",
    "Knitwear": "니트웨어",
    "Knitwear Basic": "베이직 니트웨어",
    "Ladies Sport Bras": "여성 스포츠 브라",
    "Light Basic Jersey": "얇은 베이직 저지",
    "Loungewear": "라운지웨어",
    "Mama Lingerie": "임부 란제리",
    "Nightwear": "잠옷",
    "OL Extended Sizes": "온라인 확장 사이즈",
    "Other items": "기타 상품",
    "Outwear": "아우터",
    "Premium Quality": "프리미엄",
    "Price Items": "가격 기획",
    "Projects Woven Bottoms": "프로젝트 우븐 하의",
    "Projects Woven Tops": "프로젝트 우븐 상의",
    "Promotion/ Other /Offer": "프로모션·특가",
    "Scarves": "스카프",
    "Shirt": "셔츠",
    "Shirt S&T": "셔츠 정장",
    "Shorts": "반바지",
    "Skirts": "치마",
    "Small Accessories": "작은 액세서리",
    "Small Accessories Extended": "작은 액세서리 확장",
    "Socks Bin": "양말 매대",
    "Socks Wall": "양말 진열",
    "Suit": "정장",
    "Suit jacket": "정장 재킷",
    "Swimwear": "수영복",
    "Tights basic": "베이직 타이츠",
    "Tops Fancy Jersey": "팬시 저지 상의",
    "Tops Knitwear": "니트 상의",
    "Tops Woven": "우븐 상의",
    "Trouser": "바지",
    "Trousers & Skirt": "바지·치마",
    "Woven Tops": "우븐 상의",
    "Woven bottoms": "우븐 하의",
    "Woven inactive from s1": "우븐 단종",
    "Woven top": "우븐 상의",
}

# The article column each topic slot reads, with its table (colours go through korean_colour).
COLUMN_TABLES: dict[str, dict[str, str]] = {
    "section_name": SECTIONS,
    "product_type_name": PRODUCT_TYPES,
    "graphical_appearance_name": GRAPHICAL_APPEARANCES,
    "index_group_name": INDEX_GROUPS,
    "product_group_name": PRODUCT_GROUPS,
    "garment_group_name": GARMENT_GROUPS,
    "department_name": DEPARTMENTS,
}


def korean_colour(name: str) -> str | None:
    """'Dark Blue' -> '진한 파랑'; None when neither the whole name nor modifier + base is known."""
    if name in COLOURS:
        return COLOURS[name]
    if name in BASE_COLOURS:
        return BASE_COLOURS[name]
    modifier, _, base = name.partition(" ")
    if modifier in COLOUR_MODIFIERS and base in BASE_COLOURS:
        return f"{COLOUR_MODIFIERS[modifier]} {BASE_COLOURS[base]}"
    return None


def korean_word(column: str, value: str) -> str | None:
    """The Korean for one article value of `column`; None when the tables lack it."""
    if column == "colour_group_name":
        return korean_colour(value)
    return COLUMN_TABLES[column].get(value)
